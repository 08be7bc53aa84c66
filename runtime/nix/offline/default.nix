# fnix's offline package set: real Nix packages built from Debian's binary packages, for hosts that reach
# Debian's archive and nothing else (no nixpkgs, no binary cache). Attribute names are nixpkgs' own, so a
# function.json written against this set works unchanged against nixpkgs.
#
#   python3  python3Packages.{requests,urllib3,idna,certifi,charset-normalizer,chardet,six}
#   nodejs  perl  sqlite  imagemagick  busybox  bash  gojq  patchelf
#   glibc zlib openssl libffi expat sqlite.lib …  and debian.<Debian package or group> for every store path
#
# How (the way nixpkgs packages binary software, cf. autoPatchelfHook): scripts/fetch-debs.ts resolves the
# Debian packages of ./debian.json and their dependency closure, downloads the archives and imports each
# into the store as a fixed-output path, and writes ./lock.json. Here every group of the lock becomes one
# derivation that unpacks its archives into $out (Debian's own layout, usr/…, plus bin/ links), patches
# every ELF file's interpreter to glibc's ld.so in the store and its RUNPATH to the library folders of
# its dependencies, rewrites absolute #! lines and symbolic links to store paths, and records its
# dependencies in nix-support/, so `nix-store -qR` of a package is its true closure: one store path for
# glibc, one for libssl, one for zlib, shared by every package that needs them. The builders are the
# starter set's static bash and busybox and a patchelf bootstrapped from Debian's; nothing is read from
# the host but the archives.
{ lock ? if builtins.pathExists ./lock.json then builtins.fromJSON (builtins.readFile ./lock.json)
    else throw "runtime/nix/offline/lock.json is missing: run `npm run setup` (scripts/setup.sh), whose scripts/fetch-debs.ts fetches Debian's archives and writes it"
, system ? builtins.currentSystem
, ...
}:
let
  inherit (builtins) attrNames concatStringsSep derivation elem filter foldl' hasAttr head listToAttrs map match replaceStrings substring;

  starter = import ../starter { inherit system; };
  bash = "${starter.bash}/bin/bash";
  busybox = "${starter.busybox}/bin/busybox";

  # A Debian archive, by the hash apt's lists give. Set-up put it in the store (nix-store --add-fixed):
  # the path is valid and this never builds. If it was garbage-collected, the builder says what to run.
  debFile = name:
    let d = lock.debs.${name}; in
    derivation {
      name = d.file;
      inherit system;
      builder = bash;
      args = [ "-c" "echo 'Debian archive ${d.file} is not in the Nix store: run scripts/setup.sh (npm run setup), which imports it from its cache' >&2; exit 1" ];
      outputHashMode = "flat";
      outputHashAlgo = "sha256";
      outputHash = d.sha256;
    };

  # The builders' shared prelude: `bb` is busybox, PATH is empty, and `unpack` puts archives' files in $out.
  prelude = ''
    set -euo pipefail
    BB=${busybox}
    bb() { "$BB" "$@"; }
    unpack() {
      bb mkdir -p "$out" "$TMPDIR/deb"
      for deb in "$@"; do
        (cd "$TMPDIR/deb" && bb ar x "$deb" data.tar.xz && bb tar -xJf data.tar.xz -C "$out" && bb rm data.tar.xz)
      done
      bb rm -rf "$out/usr/share/doc" "$out/usr/share/man" "$out/usr/share/info" "$out/usr/share/lintian" \
        "$out/usr/share/bug" "$out/usr/share/doc-base" "$out/usr/share/bash-completion"
    }
  '';

  lockedGroup = name: head (filter (g: g.name == name) lock.groups);
  debsOf = group: map debFile group.debs;

  # glibc (with libgcc_s, which it needs and which needs it) is only unpacked: its libraries find each
  # other, and every other ELF file is pointed at its ld.so.
  glibc = derivation {
    name = "glibc-${version (lockedGroup "glibc")}";
    inherit system;
    builder = bash;
    args = [ "-c" (prelude + ''
      unpack ${concatStringsSep " " (debsOf (lockedGroup "glibc"))}
      bb test -e "$out/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    '') ];
  };
  ldSo = "${glibc}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

  # patchelf, bootstrapped: Debian's binary is run through glibc's ld.so to patch a copy of itself, which
  # keeps a private libstdc++ (the patched libstdc++ of the set is built with this patchelf).
  patchelf = derivation {
    name = "patchelf-${version (lockedGroup "patchelf")}";
    inherit system;
    builder = bash;
    args = [ "-c" (prelude + ''
      raw="$TMPDIR/raw"
      out="$raw" unpack ${concatStringsSep " " (debsOf (lockedGroup "patchelf") ++ debsOf (lockedGroup "libstdc++6"))}
      bb mkdir -p "$out/bin" "$out/lib"
      bb cp "$raw/usr/bin/patchelf" "$out/bin/"
      bb cp -P "$raw/usr/lib/x86_64-linux-gnu/"libstdc++.so.6* "$out/lib/"
      bb chmod -R u+w "$out"
      rawLibs="$raw/usr/lib/x86_64-linux-gnu:${glibc}/lib/x86_64-linux-gnu"
      libs="$out/lib:${glibc}/lib/x86_64-linux-gnu"
      for file in "$out/bin/patchelf" "$out"/lib/libstdc++.so.6.*; do
        ${ldSo} --library-path "$rawLibs" "$raw/usr/bin/patchelf" --set-rpath "$libs" "$file"
      done
      ${ldSo} --library-path "$rawLibs" "$raw/usr/bin/patchelf" --set-interpreter ${ldSo} "$out/bin/patchelf"
      "$out/bin/patchelf" --version
    '') ];
  };

  # "8:6.9.11.60+dfsg-1.6+deb12u15" -> "6.9.11.60"; store names keep the upstream version.
  version = group: let m = match "([0-9]+:)?([^-+~]+).*" group.version; in if m == null then group.version else builtins.elemAt m 1;

  # Every dependency, transitively, without repeats (each group's list is computed once: `groups` is lazy).
  closureOf = deps: foldl' (acc: d: if elem d acc then acc else acc ++ [ d ]) [ ] (builtins.concatMap (d: d.fnixDeps ++ [ d ]) deps);

  pythonVersion = let m = match "([0-9]+\\.[0-9]+).*" (lockedGroup "python3").version; in head m;

  # Extra steps for some groups, run after unpacking and patching.
  fixups = {
    # Debian's certifi answers /etc/ssl/certs/ca-certificates.crt, which no container has; its own bundle is here.
    python3-certifi = out: ''
      core="$out/lib/python${pythonVersion}/site-packages/certifi/core.py"
      bb chmod u+w "$core"
      bb sed -i "s|'/etc/ssl/certs/ca-certificates.crt'|'$out/lib/python${pythonVersion}/site-packages/certifi/cacert.pem'|" "$core"
      bb grep -q "$out" "$core"
    '';
    # nixpkgs' layout beside Debian's: a venv made from bin/python3 looks for lib/python3.X under the
    # store path (its `home`), where Debian has usr/lib/python3.X.
    python3 = out: ''
      bb mkdir -p "$out/lib"
      bb ln -s "../usr/lib/python${pythonVersion}" "$out/lib/python${pythonVersion}"
      bb ln -s ../usr/lib/python3 "$out/lib/python3"
      # ensurepip (python3 -m venv) takes pip's wheels from Debian's WHEEL_PKG_DIR, an absolute /usr path.
      for data in "$out/usr/lib/python${pythonVersion}"/_sysconfigdata_*.py; do
        bb chmod u+w "$data"
        bb sed -i "s|'/usr/share/python-wheels/*'|'$out/usr/share/python-wheels/'|" "$data"
      done
      compile_python "$out/bin/python3" "$out/usr/lib"
    '';
    # Debian's node loads some of its own modules (acorn, undici, cjs-module-lexer) from /usr/share/nodejs,
    # a path compiled into libnode. A store path is longer, so the string becomes one of the same length,
    # /proc/self/fd/99//…, and the wrapper opens fd 99 on the store's folder before node starts. Not fd 3-15:
    # node marks those close-on-exec at start (libuv's uv_disable_stdio_inheritance stops at the first closed
    # descriptor past 15), and a node started by node (child_process.fork) must inherit it.
    nodejs = out: ''
      lib="$out/usr/lib/x86_64-linux-gnu/libnode.so.108"
      bb chmod u+w "$lib"
      ${groups.perl}/bin/perl -0777 -pi -e 's{/usr/share/nodejs/}{/proc/self/fd/99//}g' "$lib"
      bb rm -f "$out/bin/node" "$out/bin/nodejs"
      {
        echo "#!$bash"
        echo "exec 99<'$out/usr/share/nodejs' || exit 127"
        echo "exec -a \"\$0\" '$out/usr/bin/node' \"\$@\""
      } > "$out/bin/node"
      bb chmod 0555 "$out/bin/node"
      bb ln -s node "$out/bin/nodejs"
    '';
    # Perl's @INC is compiled in as /usr/… paths; the wrapper names the store's.
    perl = out: ''
      wrap "$out/bin/perl" "$out/usr/bin/perl" PERL5LIB "${concatStringsSep ":" (map (d: "${out}/${d}") [
        "etc/perl" "usr/lib/x86_64-linux-gnu/perl5/5.36" "usr/share/perl5" "usr/lib/x86_64-linux-gnu/perl-base"
        "usr/lib/x86_64-linux-gnu/perl/5.36" "usr/share/perl/5.36" ])}"
    '';
    # ImageMagick finds its coders and its configuration by compiled-in paths; the wrappers set them. `magick`
    # (ImageMagick 7's name, nixpkgs' imagemagick) runs the same convert.
    imagemagick = out: ''
      im="$out/usr/lib/x86_64-linux-gnu/ImageMagick-6.9.11"
      for tool in animate compare composite conjure convert display identify import mogrify montage stream; do
        if bb test -e "$out/usr/bin/$tool-im6.q16"; then
          wrap "$out/bin/$tool" "$out/usr/bin/$tool-im6.q16" MAGICK_CODER_MODULE_PATH "$im/modules-Q16/coders" \
            MAGICK_CODER_FILTER_PATH "$im/modules-Q16/filters" MAGICK_CONFIGURE_PATH "$out/etc/ImageMagick-6:$out/usr/share/ImageMagick-6"
        fi
      done
      bb ln -s convert "$out/bin/magick"
    '';
  };

  # One store path per group of the lock (see ./debian.json for why some Debian packages share one).
  mkGroup = group:
    let
      deps = map (n: groups.${n}) group.deps;
      all = closureOf deps;
      isPythonLibrary = match "python3-.*" group.name != null;
      drv = derivation {
        name = "${group.name}-${version group}";
        inherit system;
        builder = bash;
        args = [ "-c" (prelude + builtins.readFile ./patch-group.sh + ''
          unpack ${concatStringsSep " " (debsOf group)}
          ${if isPythonLibrary then ''
            # nixpkgs' layout, which fnix puts on PYTHONPATH (Debian's dist-packages is found only beside its python)
            bb mkdir -p "$out/lib/python${pythonVersion}"
            bb mv "$out/usr/lib/python3/dist-packages" "$out/lib/python${pythonVersion}/site-packages"
          '' else ""}
          fix_symlinks
          patch_elf_files
          link_bin
          ${if hasAttr group.name fixups then fixups.${group.name} "$out" else ""}
          patch_shebangs
          ${if isPythonLibrary then ''compile_python ${groups.python3}/bin/python3 "$out/lib"'' else ""}
          record_deps
        '') ];
        fnixDepsPaths = map (d: "${d}") all;
        patchelf = "${patchelf}/bin/patchelf";
        interpreter = ldSo;
        inherit bash;
        skipElf = if group.name == "glibc" then "1" else "";
      };
    in
    drv // { fnixDeps = all; meta.description = "Debian's ${concatStringsSep ", " group.debs} ${group.version}"; };

  groups = listToAttrs (map (g: { name = g.name; value = if g.name == "glibc" then glibc // { fnixDeps = [ ]; } else mkGroup g; }) lock.groups);

  debianName = n: replaceStrings [ "python3-" ] [ "" ] n;
  pythonLibraries = filter (n: match "python3-.*" n != null) (attrNames groups);
in
{
  inherit (starter) busybox bash gojq;
  inherit patchelf glibc;
  debian = groups;

  python3 = groups.python3;
  python311 = groups.python3;
  python3Packages = listToAttrs (map (n: { name = debianName n; value = groups.${n}; }) pythonLibraries);
  nodejs = groups.nodejs;
  nodejs_18 = groups.nodejs;
  perl = groups.perl;
  sqlite = groups.sqlite3;
  imagemagick = groups.imagemagick;
  imagemagick6 = groups.imagemagick;

  # Mozilla's CA certificates (certifi's bundle) where nixpkgs' cacert has them; fnix points SSL_CERT_FILE
  # at it for a function that declares it (runtime/nix/environment.ts).
  cacert = derivation {
    name = "cacert-${version (lockedGroup "python3-certifi")}";
    inherit system;
    builder = bash;
    args = [ "-c" (prelude + ''
      bb mkdir -p "$out/etc/ssl/certs"
      bb cp ${groups.python3-certifi}/lib/python${pythonVersion}/site-packages/certifi/cacert.pem "$out/etc/ssl/certs/ca-bundle.crt"
    '') ];
  };

  # Libraries, under nixpkgs' names.
  zlib = groups.zlib1g;
  openssl = groups.libssl3;
  libffi = groups.libffi8;
  expat = groups.libexpat1;
  xz = groups.liblzma5;
  bzip2 = groups."libbz2-1.0";
  zstd = groups.libzstd1;
  libxml2 = groups.libxml2;
  icu = groups.libicu72;
  libpng = groups.libpng16-16;
  libjpeg = groups.libjpeg62-turbo;
  readline = groups.libreadline8;
  ncurses = groups.libncursesw6;
}
