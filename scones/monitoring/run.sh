#!/bin/sh
# The hourly monitoring job's command in SageMaker's processing container:
#   /bin/sh /opt/ml/processing/input/code/run.sh [python -m scones.monitoring flags]
# This file and scones-src.tar.gz arrive together in the job's code input (one S3 prefix per content hash).
# It installs scones with the job's pinned requirements (scones/monitoring/requirements.txt), then runs the
# monitor in a scratch folder; which bucket, endpoint and stack come from the job's Environment.
set -eu
export PYTHONUNBUFFERED=1  # the job's log (CloudWatch) in the order things happened
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mkdir -p "$work/src"
tar -xzf "$here/scones-src.tar.gz" -C "$work/src"
echo "run.sh: installing scones and $(grep -c '^[a-z]' "$work/src/scones/monitoring/requirements.txt") pinned packages"
python -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore \
    "$work/src" -r "$work/src/scones/monitoring/requirements.txt"
cd "$work"
exec python -m scones.monitoring "$@"
