# Steps of a group's builder (default.nix), after its Debian archives are unpacked into $out. Run by static
# bash with `bb` (busybox) and no PATH. From the derivation: $fnixDepsPaths (every dependency's store path,
# transitively), $patchelf, $interpreter (glibc's ld.so), $bash, $skipElf (set for glibc itself).

# Folders holding shared libraries (lib*.so*), ours first, then each dependency's: the RUNPATH of every ELF file.
library_dirs() {
  local root dir seen=""
  for root in "$out" $fnixDepsPaths; do
    for dir in $(bb find "$root" \( -type f -o -type l \) -name 'lib*.so*' | while IFS= read -r f; do echo "${f%/*}"; done | bb sort -u); do
      case "$dir" in */gconv) continue ;; esac
      case ":$seen:" in *":$dir:"*) ;; *) seen="${seen:+$seen:}$dir" ;; esac
    done
  done
  printf '%s' "$seen"
}

# Absolute links (/usr/lib/… in Debian's archives) point into $out when the target is ours, else into the
# dependency that has it; a target nobody has stays, dangling, and is listed in nix-support/dangling-links.
fix_symlinks() {
  local link target root found
  bb mkdir -p "$out/nix-support"
  while IFS= read -r link; do
    target=$(bb readlink "$link")
    case "$target" in /*) ;; *) continue ;; esac
    found=""
    for root in "$out" $fnixDepsPaths; do
      if bb test -e "$root$target" || bb test -L "$root$target"; then found="$root$target"; break; fi
    done
    if [ -n "$found" ]; then bb ln -sfn "$found" "$link"; else echo "${link#"$out"} -> $target" >> "$out/nix-support/dangling-links"; fi
  done < <(bb find "$out" -type l)
}

# Every ELF file: the interpreter becomes glibc's ld.so in the store, the RUNPATH the library folders. A
# library a file needs that none of them has is listed in nix-support/missing-libraries (optional plugins
# of a package may need one its Debian dependencies do not bring; programs should not).
patch_elf_files() {
  [ -z "$skipElf" ] || return 0
  local rpath file magic needed lib dir ok
  rpath=$(library_dirs)
  while IFS= read -r file; do
    magic=""
    LC_ALL=C read -r -N 4 magic < "$file" 2>/dev/null || true
    [ "$magic" = $'\177ELF' ] || continue
    bb chmod u+w "$file"
    if "$patchelf" --print-interpreter "$file" >/dev/null 2>&1; then
      "$patchelf" --set-interpreter "$interpreter" "$file"
    fi
    needed=$("$patchelf" --print-needed "$file" 2>/dev/null || true)
    [ -n "$needed" ] || continue
    "$patchelf" --set-rpath "$rpath" "$file"
    for lib in $needed; do
      ok=""
      for dir in ${rpath//:/ } "$(bb dirname "$file")"; do
        if bb test -e "$dir/$lib"; then ok=1; break; fi
      done
      [ -n "$ok" ] || echo "${file#"$out"}: $lib" >> "$out/nix-support/missing-libraries"
    done
  done < <(bb find "$out" -type f)
}

# `#!/usr/bin/python3.11` and the like, in bin folders, become the store path of that program; `/bin/sh`
# and `/bin/bash` become the static bash.
patch_shebangs() {
  local file first interp rest root found
  for file in "$out"/usr/bin/* "$out"/usr/sbin/* "$out"/bin/* "$out"/sbin/*; do
    bb test -f "$file" && ! bb test -L "$file" || continue
    first=""
    IFS= read -r first < "$file" 2>/dev/null || true
    case "$first" in '#!/'* | '#! /'*) ;; *) continue ;; esac
    interp=${first#\#!}; interp=${interp# }; interp=${interp%% *}; rest=${first#*"$interp"}
    found=""
    case "$interp" in
      /bin/sh|/bin/bash|/usr/bin/sh|/usr/bin/bash) found="$bash" ;;
      /nix/store/*) continue ;;
      /usr/bin/env) continue ;; # containers have /usr/bin/env, which finds the program on PATH
      *)
        # bin/<name> first: a wrapper there (perl's) is what the program needs.
        for root in "$out" $fnixDepsPaths; do
          if bb test -e "$root/bin/${interp##*/}"; then found="$root/bin/${interp##*/}"; break; fi
          if bb test -e "$root$interp"; then found="$root$interp"; break; fi
        done
        [ -n "$found" ] || echo "${file#"$out"}: #!$interp" >> "$out/nix-support/unresolved-interpreters"
        ;;
    esac
    [ -n "$found" ] || continue
    bb chmod u+w "$file"
    bb sed -i "1s|.*|#!$found$rest|" "$file"
  done
}

# bin/ holds every program of usr/bin, usr/sbin and sbin (nixpkgs' layout, which fnix puts on PATH).
link_bin() {
  local dir file name
  for dir in usr/bin usr/sbin sbin; do
    bb test -d "$out/$dir" || continue
    for file in "$out/$dir"/*; do
      name=$(bb basename "$file")
      bb mkdir -p "$out/bin"
      bb test -e "$out/bin/$name" || bb test -L "$out/bin/$name" || bb ln -s "../$dir/$name" "$out/bin/$name"
    done
  done
}

# wrap <wrapper> <program> [VARIABLE value]…: a bash script that sets the variables and runs the program.
wrap() {
  local wrapper=$1 program=$2
  shift 2
  bb mkdir -p "$(bb dirname "$wrapper")"
  bb rm -f "$wrapper"
  {
    echo "#!$bash"
    # The store's folders first, then whatever the function set.
    while [ $# -ge 2 ]; do echo "export $1='$2'\"\${$1:+:\$$1}\""; shift 2; done
    echo "exec -a \"\$0\" '$program' \"\$@\""
  } > "$wrapper"
  bb chmod 0555 "$wrapper"
}

# Dependencies are kept by reference (as nixpkgs' propagated-build-inputs), so the closure is Debian's.
record_deps() {
  bb mkdir -p "$out/nix-support"
  echo $fnixDepsPaths > "$out/nix-support/propagated-build-inputs"
}

# Byte-code for every module, made now (Debian makes it when a package is installed). The store is
# read-only, so Python could not write it at run time and would compile every import on every start;
# and as root it would write into the store. unchecked-hash: the store never changes, so no check.
compile_python() {
  local python=$1 dir=$2
  bb chmod -R u+w "$dir"
  PYTHONDONTWRITEBYTECODE=1 "$python" -m compileall -f -q -j 2 --invalidation-mode unchecked-hash "$dir" >/dev/null
}
