# fnix "starter" package set: a tiny, offline stand-in for nixpkgs.
#
# No nixpkgs and no binary cache are available on fnix hosts, so this set wraps Debian's static binaries into
# real Nix derivations. `import ./. {}` gives { busybox, bash, gojq }, each a store path with a bin/ folder.
# The host paths are arguments so another machine (or a test) can point them elsewhere.
{ busyboxBin ? /bin/busybox
, bashBin ? /bin/bash-static
, gojqBin ? /usr/bin/gojq
, system ? builtins.currentSystem
, ...
}:
let
  # Copy a host file into the store. builtins.path keeps the executable bit; the name drops the host's
  # "-static" suffix etc. so store paths read well.
  addToStore = name: path: builtins.path { inherit name path; };

  bashStatic = addToStore "bash-static" bashBin;
  busyboxFile = addToStore "busybox" busyboxBin;
  gojqFile = addToStore "gojq" gojqBin;

  # Every builder is static bash, running a script in which `bb` is busybox. busybox chooses its applet
  # from argv[0]; the store file is called <hash>-busybox, so `exec -a busybox` makes it take the applet
  # from the first argument instead. PATH is empty on purpose: the build depends on nothing else.
  prelude = ''
    set -eu
    bb() { (exec -a busybox "$busybox" "$@"); }
    bb mkdir -p "$out/bin"
  '';

  # A derivation with `script` run after the prelude, plus nixpkgs-style meta (kept out of the
  # derivation's environment, where an attribute set cannot go).
  mkStarterPackage = { name, description, script }:
    (builtins.derivation {
      inherit name system;
      builder = "${bashStatic}";
      args = [ "-c" (prelude + script) ];
      busybox = "${busyboxFile}";
      PATH = "/path-not-set";
    }) // { meta = { inherit description; }; };
in
{
  busybox = mkStarterPackage {
    name = "busybox-static";
    description = "BusyBox (Debian's busybox-static) with a bin/ symlink for every applet";
    script = ''
      bb cp "$busybox" "$out/bin/busybox"
      bb chmod 0555 "$out/bin/busybox"
      for applet in $(bb --list); do
        if [ "$applet" != busybox ]; then bb ln -s busybox "$out/bin/$applet"; fi
      done
    '';
  };

  bash = mkStarterPackage {
    name = "bash-static";
    description = "GNU Bash (Debian's bash-static) as bin/bash and bin/sh";
    script = ''
      bb cp ${bashStatic} "$out/bin/bash"
      bb chmod 0555 "$out/bin/bash"
      bb ln -s bash "$out/bin/sh"
    '';
  };

  gojq = mkStarterPackage {
    name = "gojq";
    description = "gojq, a jq implementation in Go (Debian's static build)";
    script = ''
      bb cp ${gojqFile} "$out/bin/gojq"
      bb chmod 0555 "$out/bin/gojq"
    '';
  };
}
