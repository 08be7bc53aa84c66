# Helper for runtime/nix/repository-set.ts, evaluated by fnix itself (trusted, not restricted): describes the
# derivations of a package set as data, so that pushed Nix code can be given the set as `<fnix>`
# (offline-view.nix) without reading any file the set is made from.
#
#   nix-instantiate --eval --strict --json --read-write-mode describe-set.nix --arg set ./starter
#
# --read-write-mode makes evaluating each drvPath write its .drv file to the store, where a pushed set's
# builds find it. The value is the set's tree, each node one of:
#   { derivation = { name; system; drvPath; outputName; outputs = { <output> = <store path>; }; description; }; }
#   { set = { <name> = <node>; }; }      an attribute set that is not a derivation, down to depth 3
# Anything else (a function, a number, a value that throws) is left out.
{ set }:
let
  inherit (builtins) attrNames deepSeq filter isAttrs isFunction isPath isString listToAttrs tryEval;

  imported = if isPath set then import set else set;
  top = if isFunction imported then imported { } else imported;

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";

  describeDerivation = drv: {
    inherit (drv) name drvPath;
    system = drv.system or builtins.currentSystem;
    outputName = drv.outputName or "out";
    outputs = listToAttrs (map (o: { name = o; value = drv.${o}.outPath; }) (drv.outputs or [ "out" ]));
    description = let d = (drv.meta or { }).description or null; in if isString d then d else "";
  };

  # Every step guarded: a value that throws is left out, not fatal.
  describe = depth: value:
    let
      node =
        if isDerivation value then { derivation = describeDerivation value; }
        else if isAttrs value && depth < 3 then { set = describeAll (depth + 1) value; }
        else null;
      forced = tryEval (deepSeq node node);
    in
    if forced.success then forced.value else null;

  describeAll = depth: attrs:
    let
      described = map (name: { inherit name; value = describe depth attrs.${name}; }) (attrNames attrs);
    in
    listToAttrs (filter (entry: entry.value != null) described);
in
describeAll 0 top
