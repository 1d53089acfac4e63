#!/usr/bin/env bash
# Undo deploy.sh: terraform destroy of everything it made (both VMs, the disks and their
# models, the network, the IP, the keys, the bucket). The Hugging Face token secret, made from
# your own token, is kept unless --delete-hf-token.
#   deploy/gcp/destroy.sh [--yes] [--delete-hf-token] [--dry-run]
set -euo pipefail
# shellcheck source=deploy/gcp/lib.sh
. "$(dirname "$0")/lib.sh"

yes=false delete_token=false
while [ $# -gt 0 ]; do
  case $1 in
    --yes | -y) yes=true ;;
    --delete-hf-token) delete_token=true ;;
    --dry-run) dry_run=true ;;
    -h | --help) sed -n '2,6s/^# \{0,1\}//p' "$0" && exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
[ -f "$tfvars" ] || die "no $tfvars: nothing was deployed from here"
project=$(tfvar project)
hf_secret=$(tfvar hf_token_secret)

step "tools"
need_tools gcloud terraform git python3

step "terraform destroy in project $project"
# Terraform reads the uploaded archive's checksum even to destroy: make it if it is gone.
[ -f "$archive" ] || pack_source
run terraform -chdir="$here" init -input=false
destroy=(terraform -chdir="$here" destroy -input=false)
[ "$yes" = true ] && destroy+=(-auto-approve)
run "${destroy[@]}"

step "the Hugging Face token secret"
if [ -z "$hf_secret" ]; then
  say "none was made"
elif [ "$delete_token" = true ]; then
  run gcloud secrets delete "$hf_secret" --project="$project" --quiet
else
  say "kept: $hf_secret (delete it with --delete-hf-token, or gcloud secrets delete $hf_secret)"
fi
run rm -f "$tfvars"
