#!/bin/sh
# The guide's Quick Start (scripts/run_channel.sh): train with channel tokens on data/processed into outputs/,
# from a checkout, installed or not. Extra arguments are passed on: bin/run_channel.sh --config small_data
here=$(dirname "$0")
exec python3 "$here/cardiac-train" --data_dir data/processed --output_dir outputs --token_type channel "$@"
