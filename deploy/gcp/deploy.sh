#!/usr/bin/env bash
# From an empty GCP project (billing on) to a gateway answering on HTTPS, in one command:
#
#   deploy/gcp/deploy.sh --project ID [--zone us-central1-a] [--gpu t4|l4|a100-40gb|a100-80gb]
#       [--spot] [--bridge] [--domain tutor.example.com] [--name vo] [--yes] [--dry-run]
#
# It checks gcloud, terraform and your login, enables the APIs, checks the GPU quota (and says
# where to ask for it), stores $HF_TOKEN in Secret Manager when set (PersonaPlex's gated
# weights), packs the project (git archive), runs terraform apply, waits until the gateway
# answers /health/live (its first boot waits for the GPU host's own: 20-40 minutes), and prints
# the URL, how to read the API key and the monthly cost. The choices are kept in
# deploy.auto.tfvars.json, so a second run (or destroy.sh) needs no flags.
# --dry-run prints every step and runs only the checks that change nothing.
set -euo pipefail
# shellcheck source=deploy/gcp/lib.sh
. "$(dirname "$0")/lib.sh"

usage() { sed -n '2,15s/^# \{0,1\}//p' "$0"; }

project="" zone="" gpu="" spot="" bridge="" domain="" name="" yes=false
wait_s=${VO_DEPLOY_WAIT_S:-3600}
while [ $# -gt 0 ]; do
  case $1 in
    --project) project=${2:?--project needs a value} && shift ;;
    --zone) zone=${2:?--zone needs a value} && shift ;;
    --gpu) gpu=${2:?--gpu needs a value} && shift ;;
    --domain) domain=${2:?--domain needs a value} && shift ;;
    --name) name=${2:?--name needs a value} && shift ;;
    --wait-s) wait_s=${2:?--wait-s needs a value} && shift ;;
    --spot) spot=true ;;
    --no-spot) spot=false ;;
    --bridge) bridge=true ;;
    --no-bridge) bridge=false ;;
    --yes | -y) yes=true ;;
    --dry-run) dry_run=true ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && die "unknown argument: $1" ;;
  esac
  shift
done

# A flag wins; else what the last run stored; else the default.
project=${project:-$(tfvar project)}
zone=${zone:-$(tfvar zone)}
zone=${zone:-us-central1-a}
gpu=${gpu:-$(tfvar gpu)}
gpu=${gpu:-t4}
spot=${spot:-$(tfvar spot)}
spot=${spot:-false}
bridge=${bridge:-$(tfvar bridge)}
bridge=${bridge:-false}
domain=${domain:-$(tfvar domain)}
name=${name:-$(tfvar name)}
name=${name:-vo}
hf_secret=$(tfvar hf_token_secret)
region=${zone%-*}
host=$name-gpu-host
case $gpu in
  t4 | l4 | a100-40gb | a100-80gb) ;;
  *) die "--gpu $gpu: one of t4, l4, a100-40gb, a100-80gb" ;;
esac
[ "$dry_run" = true ] && printf 'dry run: nothing is changed; the steps that would be are printed\n'

step "tools: gcloud, terraform (1.5+), git, curl, python3"
need_tools gcloud terraform git curl python3

step "account and project"
account=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null | head -n1)
[ -n "$account" ] || die "gcloud has no active account: run gcloud auth login"
project=${project:-$(gcloud config get-value project 2>/dev/null || true)}
[ -n "$project" ] || die "no project: pass --project ID (or gcloud config set project ID)"
say "account $account, project $project, zone $zone"
if ! gcloud auth application-default print-access-token >/dev/null 2>&1; then
  die "terraform needs Application Default Credentials: run gcloud auth application-default login"
fi

step "APIs: Compute Engine, IAM, IAP, Secret Manager, Cloud Storage"
apis=(compute.googleapis.com iam.googleapis.com iap.googleapis.com secretmanager.googleapis.com
  storage.googleapis.com)
run gcloud services enable "${apis[@]}" --project="$project"

step "GPU quota for one $gpu$([ "$spot" = true ] && echo ' (Spot)') in $region"
metric=$(awk -v gpu="$gpu" '$1 == gpu && $2 == "=" { inside = 1 }
  inside && $1 == "quota" { gsub(/"/, "", $3); print $3; exit }' "$here/locals.tf")
[ -n "$metric" ] || die "no quota metric for $gpu in $here/locals.tf"
[ "$spot" = true ] && metric=PREEMPTIBLE_$metric
quota_link() {
  printf 'https://console.cloud.google.com/iam-admin/quotas?project=%s&metric=compute.googleapis.com%%2F%s' \
    "$project" "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
}
# units_left LIMIT USAGE: whole GPUs left in a quota.
units_left() { echo $((${1%%.*} - ${2%%.*})); }
if gcloud compute instances describe "$host" --zone="$zone" --project="$project" \
  --format='value(name)' >/dev/null 2>&1; then
  say "$host exists already: its GPU is counted in the quota"
elif ! gcloud services list --enabled --project="$project" \
  --filter=config.name=compute.googleapis.com --format='value(config.name)' 2>/dev/null |
  grep -q compute; then
  say "cannot read the quota before the Compute Engine API is enabled (step 3)"
  [ "$dry_run" = true ] || die "the Compute Engine API is not enabled in $project"
else
  missing=()
  read -r limit usage < <(gcloud compute regions describe "$region" --project="$project" \
    --flatten=quotas --filter="quotas.metric=$metric" \
    --format='value(quotas.limit,quotas.usage)') || true
  say "$metric in $region: limit ${limit:-0}, in use ${usage:-0}"
  (($(units_left "${limit:-0}" "${usage:-0}") >= 1)) || missing+=("$metric in region $region")
  read -r limit usage < <(gcloud compute project-info describe --project="$project" \
    --flatten=quotas --filter=quotas.metric=GPUS_ALL_REGIONS \
    --format='value(quotas.limit,quotas.usage)') || true
  say "GPUS_ALL_REGIONS: limit ${limit:-0}, in use ${usage:-0}"
  (($(units_left "${limit:-0}" "${usage:-0}") >= 1)) || missing+=(GPUS_ALL_REGIONS)
  if [ ${#missing[@]} -gt 0 ]; then
    printf '\nerror: not enough GPU quota in project %s for one %s.\n' "$project" "$gpu" >&2
    for quota in "${missing[@]}"; do
      printf '  - %s: ask for at least 1 at\n    %s\n' "$quota" "$(quota_link "${quota%% *}")" >&2
    done
    printf '  (Edit quotas, new value 1, a one-line reason. Small requests are often granted\n' >&2
    printf '   within minutes, some take two days; new projects may first need a paid account.)\n' >&2
    printf '  Then run this again.\n' >&2
    exit 1
  fi
fi

step "Hugging Face token (gated weights: PersonaPlex)"
if [ -n "${HF_TOKEN:-}" ]; then
  hf_secret=$name-hf-token
  if ! gcloud secrets describe "$hf_secret" --project="$project" >/dev/null 2>&1; then
    run gcloud secrets create "$hf_secret" --replication-policy=automatic --project="$project"
  fi
  say "adding \$HF_TOKEN as a new version of $hf_secret (through stdin, never the command line)"
  if [ "$dry_run" != true ]; then
    printf '%s' "$HF_TOKEN" | gcloud secrets versions add "$hf_secret" --data-file=- \
      --project="$project" >/dev/null
  fi
elif [ -n "$hf_secret" ]; then
  say "keeping the secret $hf_secret from the last run"
else
  say "HF_TOKEN is not set: fine for t4 and l4; the A100 profiles' PersonaPlex needs it"
fi

step "pack the project (git archive) into $archive"
pack_source

step "terraform init and apply (settings in $tfvars)"
settings=$(python3 -c 'import json, sys
names = ("project", "zone", "gpu", "spot", "bridge", "domain", "name", "hf_token_secret")
values = dict(zip(names, sys.argv[1:]))
for flag in ("spot", "bridge"):
    values[flag] = values[flag] == "true"
print(json.dumps(values, indent=2))' "$project" "$zone" "$gpu" "$spot" "$bridge" "$domain" \
  "$name" "$hf_secret")
if [ "$dry_run" = true ]; then
  say "would write $tfvars:"
  printf '%s\n' "$settings" | sed 's/^/      /'
else
  printf '%s\n' "$settings" >"$tfvars"
fi
run terraform -chdir="$here" init -input=false
apply=(terraform -chdir="$here" apply -input=false)
[ "$yes" = true ] && apply+=(-auto-approve)
run "${apply[@]}"

step "wait for the gateway's /health/live (up to $wait_s s)"
if [ "$dry_run" = true ]; then
  say "would poll \$(terraform output -raw gateway_url)/health/live until it answers 200"
  printf '\ndry run done: run it again without --dry-run to deploy.\n'
  exit 0
fi
url=$(tf output -raw gateway_url)
started=$SECONDS
until curl -fsS --max-time 10 -o /dev/null "$url/health/live" 2>/dev/null; do
  if ((SECONDS - started >= wait_s)); then
    say "no answer from $url after $wait_s s. Its boot log:"
    say "  $(tf output -json ssh_commands | python3 -c 'import json, sys
print(json.load(sys.stdin)["gateway"])') -- sudo journalctl -u google-startup-scripts"
    die "the gateway did not come up"
  fi
  if (((SECONDS - started) % 60 < 10)); then
    say "not yet ($((SECONDS - started)) s): the first boot installs the GPU host first"
  fi
  sleep 10
done
say "$url answers"

step "done"
tf output
printf '\nThe app connects to %s/v1 with the key that api_key_command prints.\n' "$url"
printf 'Next: deploy/README.md, "Talk to the tutor".\n'
