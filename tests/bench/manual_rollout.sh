#!/usr/bin/env bash
# The seed's manual procedure, scripted with the AWS CLI: for each stack, one after another,
# wait until it is settled, phase 1 (migration group on the new AMI), wait, phase 2 (API
# group on the new AMI, migration group to 0), wait. Every parameter is passed, the
# untouched ones with UsePreviousValue, as the runbook did.
# usage: manual_rollout.sh IMAGE POLL_SECONDS STACK...   (AWS_ENDPOINT_URL set by the caller)
set -euo pipefail
image=$1 poll=$2
shift 2

settle() {
  while :; do
    status=$(aws cloudformation describe-stacks --stack-name "$1" \
      --query 'Stacks[0].StackStatus' --output text)
    case $status in
      *_IN_PROGRESS) sleep "$poll" ;;
      UPDATE_ROLLBACK_COMPLETE) echo "$1 rolled back" >&2; exit 1 ;;
      *) return 0 ;;
    esac
  done
}

keep() { for k in "$@"; do printf 'ParameterKey=%s,UsePreviousValue=true ' "$k"; done; }

for stack in "$@"; do
  settle "$stack"
  # shellcheck disable=SC2046
  aws cloudformation update-stack --stack-name "$stack" --use-previous-template \
    --parameters ParameterKey=MigrationLcImageId,ParameterValue="$image" \
    ParameterKey=MigrationDesiredCapacity,ParameterValue=1 \
    $(keep EnvName KeyName RepoUrl BranchNameOrSha LcImageId Asg1DesiredCapacity) >/dev/null
  settle "$stack"
  # shellcheck disable=SC2046
  aws cloudformation update-stack --stack-name "$stack" --use-previous-template \
    --parameters ParameterKey=LcImageId,ParameterValue="$image" \
    ParameterKey=Asg1DesiredCapacity,ParameterValue=1 \
    ParameterKey=MigrationDesiredCapacity,ParameterValue=0 \
    $(keep EnvName KeyName RepoUrl BranchNameOrSha MigrationLcImageId) >/dev/null
  settle "$stack"
done
