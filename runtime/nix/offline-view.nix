# `<fnix>` as pushed Nix code sees it (runtime/nix/repository-set.ts copies this file, as default.nix, beside the
# set.json that describe-set.nix wrote): the offline package set's derivations, made again from their
# description, so that a pushed packages.nix can build on them under restrict-eval without reading any file
# the set is made from.
#
#   let fnix = import <fnix> { }; in fnix // { mine = derivation { builder = "${fnix.busybox}/bin/sh"; ... }; }
#
# Each package is a derivation value like the original: `type`, `name`, `system`, `drvPath`, `outPath`, `outputName`,
# `outputs`, one attribute per output, and `meta.description`. Its strings carry the derivation as their context,
# so a derivation that uses one depends on it (builtins.appendContext needs no access to the file).
{ ... }:
let
  inherit (builtins) appendContext attrNames fromJSON listToAttrs mapAttrs readFile;

  rebuild = d:
    let
      drvPath = appendContext d.drvPath { ${d.drvPath} = { allOutputs = true; }; };
      outputNames = attrNames d.outputs;
      common = {
        type = "derivation";
        inherit (d) name system;
        inherit drvPath;
        outputs = outputNames;
        meta = { inherit (d) description; };
      } // listToAttrs (map (o: { name = o; value = withOutput o; }) outputNames);
      withOutput = o: common // {
        outputName = o;
        outPath = appendContext d.outputs.${o} { ${d.drvPath} = { outputs = [ o ]; }; };
      };
    in
    withOutput d.outputName;

  walk = node: if node ? derivation then rebuild node.derivation else mapAttrs (_: walk) node.set;
in
mapAttrs (_: walk) (fromJSON (readFile ./set.json))
