#!/bin/bash
# keras-lottery on a Slurm cluster: one job array, every task a worker of one run directory.
#
#   sbatch examples/slurm_array.sh recipes/lenet300_mnist.json /shared/runs/lenet300
#
# The run directory must be on a filesystem every node mounts (NFS, Lustre, GPFS, CephFS):
# workers coordinate only through files in it (claims made with O_CREAT|O_EXCL, results
# renamed into place). Task 0 sets the run directory up and trains; every other task waits
# for the set-up and joins with `keras-lottery worker`. The array index only names the logs:
# claims do the scheduling, so the array may be any size, tasks may start late, fail or be
# requeued, and `sbatch` again with the same arguments resumes an unfinished run.
#SBATCH --job-name=keras-lottery
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --gres=gpu:1
#SBATCH --time=24:00:00
#SBATCH --output=keras-lottery-%A_%a.log
set -euo pipefail
recipe=${1:?usage: sbatch slurm_array.sh RECIPE RUN_DIR}
run_dir=${2:?usage: sbatch slurm_array.sh RECIPE RUN_DIR}
name="slurm-${SLURM_ARRAY_JOB_ID:-0}-${SLURM_ARRAY_TASK_ID:-0}"

if [ "${SLURM_ARRAY_TASK_ID:-0}" = 0 ]; then
    # Sets up (or resumes) the run directory, trains until the experiment is finished,
    # then writes results.csv and the report.
    exec keras-lottery run "$recipe" --out "$run_dir" --plain
fi
for _ in $(seq 600); do  # up to 10 minutes for task 0 to load the data and set up
    [ -f "$run_dir/identity.json" ] && break
    sleep 1
done
# Trains ready trainings until none is left that it could claim; exits 0.
exec keras-lottery worker "$run_dir" --name "$name" --plain
