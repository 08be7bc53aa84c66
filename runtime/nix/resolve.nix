# Helper for runtime/nix/resolve.ts: looks attribute paths up in a package set and reports, as data, what
# each one is, so the caller can name every missing package at once instead of parsing an eval error.
#
#   nix-instantiate --eval --strict --json resolve.nix --arg pkgs '<nixpkgs>' \
#     --argstr attrsJson '["gojq","python3Packages.requests"]' -A info
#
# `info` is a list, in request order, of one of:
#   { attr; status = "ok"; drvPath; output; path; }      output = the output to put on PATH ("bin" if any)
#   { attr; status = "missing"; }                         no such attribute path in the set
#   { attr; status = "notDerivation"; type; }             exists, but is e.g. an attribute set of packages
#   { attr; status = "evalError"; }                       evaluating it threw (broken, unfree, removed alias…)
# `build` is the chosen outputs as derivations (for nix-build), `strict` evaluates the drvPaths without
# tryEval, so that running it shows the real error message of an "evalError" attribute, and `setType` is
# the type of the package set after importing/calling it ("set" when usable).
{ pkgs
, attrsJson ? "[]"
}:
let
  inherit (builtins) filter foldl' isAttrs isFunction isPath isString split tryEval typeOf deepSeq elem;

  # A path (e.g. <nixpkgs> or /srv/pkgs) is imported; a function (nixpkgs' top level) is called with {}.
  imported = if isPath pkgs then import pkgs else pkgs;
  set = if isFunction imported then imported { } else imported;

  attrs = builtins.fromJSON attrsJson;

  # Walk "a.b.c" one name at a time; every step is guarded so a throwing value is reported, not fatal.
  lookup = attr:
    let
      names = filter isString (split "\\." attr);
      step = acc: name:
        if acc.status != "ok" then acc
        else if !(isAttrs acc.value) || !(acc.value ? ${name}) then { status = "missing"; }
        else
          let r = tryEval acc.value.${name};
          in if r.success then { status = "ok"; value = r.value; } else { status = "evalError"; };
    in
    foldl' step { status = "ok"; value = set; } names;

  # The same walk without any guard, so that Nix reports the real error.
  lookupUnguarded = attr: foldl' (value: name: value.${name}) set (filter isString (split "\\." attr));

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";

  # The output to put on PATH: nixpkgs splits binaries into "bin" when a package has several outputs.
  chooseOutput = drv: if elem "bin" (drv.outputs or [ ]) && drv ? bin then drv.bin else drv;

  describeDerivation = attr: drv:
    let
      chosen = chooseOutput drv;
      facts = {
        inherit attr;
        status = "ok";
        drvPath = chosen.drvPath;
        output = chosen.outputName or "out";
        path = chosen.outPath; # not "outPath": the JSON printer turns any set with outPath into a string
      };
      forced = tryEval (deepSeq facts facts);
    in
    if forced.success then forced.value else { inherit attr; status = "evalError"; };

  describe = attr:
    let
      found = lookup attr;
      kind = tryEval (isDerivation found.value);
    in
    if found.status != "ok" then { inherit attr; inherit (found) status; }
    else if !kind.success then { inherit attr; status = "evalError"; }
    else if !kind.value then { inherit attr; status = "notDerivation"; type = typeOf found.value; }
    else describeDerivation attr found.value;
in
{
  setType = typeOf set;
  info = map describe attrs;
  build = map (attr: chooseOutput (lookup attr).value) attrs;
  strict = map (attr: (chooseOutput (lookupUnguarded attr)).drvPath) attrs;
}
