# shellcheck shell=bash
# What deploy.sh and destroy.sh share: messages, the dry-run switch, tool checks, Terraform.
# Sourced, not run.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tfvars=$here/deploy.auto.tfvars.json # terraform reads *.auto.tfvars.json by itself
archive=$here/build/voice-orchestrator.tar.gz
dry_run=false
step_no=0

step() {
  step_no=$((step_no + 1))
  printf '\n==> %d. %s\n' "$step_no" "$*"
}
say() { printf '    %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# run CMD...: a command that changes something; with --dry-run it is printed instead.
run() {
  if [ "$dry_run" = true ]; then
    printf '    would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

tf() { terraform -chdir="$here" "$@"; }

need_tools() {
  local tool version
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed ($(install_hint "$tool"))"
  done
  if [[ " $* " == *" terraform "* ]]; then
    version=$(terraform version | sed -n '1s/^Terraform v\([0-9.]*\).*/\1/p')
    case $version in
      0.* | 1.[0-4].*) die "terraform $version is too old: 1.5 or newer" ;;
    esac
    say "terraform $version"
  fi
  say "gcloud: $(gcloud version 2>/dev/null | sed -n 1p)"
}

install_hint() {
  case $1 in
    gcloud) echo "https://cloud.google.com/sdk/docs/install, or use Cloud Shell" ;;
    terraform) echo "https://developer.hashicorp.com/terraform/install; Cloud Shell has it" ;;
    *) echo "install it with your package manager" ;;
  esac
}

# tfvar NAME: a value deploy.sh stored in deploy.auto.tfvars.json (empty if none).
tfvar() {
  [ -f "$tfvars" ] || return 0
  python3 -c 'import json, sys
value = json.load(open(sys.argv[1])).get(sys.argv[2], "")
print(str(value).lower() if isinstance(value, bool) else value)' "$tfvars" "$1"
}

# The project as deploy.sh uploads it: the checked-in files plus uncommitted changes to them
# (git stash create), never untracked files such as keys or .venv.
pack_source() {
  local ref=HEAD
  if [ "$dry_run" != true ]; then
    ref=$(git -C "$repo" stash create 2>/dev/null || true)
    ref=${ref:-HEAD}
  fi
  run mkdir -p "$here/build"
  run git -C "$repo" archive --format=tar.gz -o "$archive" "$ref"
}
