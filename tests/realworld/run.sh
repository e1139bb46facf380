#!/usr/bin/env bash
# Runs `kiln validate` on a corpus of real Packer templates, each the way its project documents
# (the same flags Packer 1.6.6 was given), and prints one line per template:
#   ID <tab> kiln's verdict <tab> Packer's verdict (after `packer fix` when it needed one) <tab> kiln's first problem
#
#   tests/realworld/run.sh CORPUS_DIR [KILN]
#
# CORPUS_DIR holds one directory per template (the source repository's files at the recorded
# commit) and manifest.tsv (columns: id, repo, path, commit, template, command, packer_args,
# packer_verdict, packer_output, after_fix_verdict, after_fix_output, workdir, env, …).
# tests/realworld/SOURCES.md lists the templates; the corpus itself is not in this repository
# (it is other projects' code): fetch the repositories at the listed commits to rebuild it.
set -euo pipefail
corpus=$(realpath "${1:?usage: tests/realworld/run.sh CORPUS_DIR [KILN]}")
kiln=$(realpath "${2:-$(dirname "$0")/../../target/debug/kiln}")
[ -x "$kiln" ] || { echo "no kiln binary at $kiln: cargo build first" >&2; exit 1; }
[ -f "$corpus/manifest.tsv" ] || { echo "no manifest.tsv in $corpus" >&2; exit 1; }

accepted=0; total=0
# Tabs become \037 for `read`: tab counts as white space there, and empty columns would vanish.
while IFS=$'\037' read -r id _repo _path _commit template _command packer_args packer_verdict _out after_fix _afout workdir envs _rest; do
  [ "$id" = id ] && continue
  total=$((total + 1))
  dir="$corpus/$id"
  rel=$(realpath --relative-to="$dir/$workdir" "$dir/$template")
  envs=${envs//<abs path of _validate_key\/id_rsa>/$dir/_validate_key/id_rsa}
  eval "args=($packer_args)"
  out=$(cd "$dir/$workdir" && env $envs XDG_CACHE_HOME="$corpus/.cache" "$kiln" validate "${args[@]}" "$rel" 2>&1 </dev/null) && verdict=valid || verdict=invalid
  [ "$verdict" = valid ] && accepted=$((accepted + 1))
  packer=${after_fix:-$packer_verdict}
  first=$(printf '%s\n' "$out" | { grep -v ': note: \|: warning: \|: valid (\|: invalid (' || true; } | head -1)
  printf '%s\t%s\t%s\t%s\n' "$id" "$verdict" "$packer" "$first"
done < <(tr '\t' '\037' < "$corpus/manifest.tsv")
echo "kiln accepts $accepted of $total" >&2
