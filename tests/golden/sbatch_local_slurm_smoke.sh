#!/bin/bash

# Parameters
#SBATCH --cpus-per-task=1
#SBATCH --error=<TMP>/res/<RUN_ID>/slurm/%j_0_log.err
#SBATCH --gpus-per-node=1
#SBATCH --job-name=aifbench-smoke
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=<TMP>/res/<RUN_ID>/slurm/%j_0_log.out
#SBATCH --partition=debug
#SBATCH --requeue
#SBATCH --signal=USR2@30
#SBATCH --time=10

# setup
# option sources (command line > job file > suite > profile):
#   partition = debug  <- job file
#   qos = (none)  <- -
#   nodes = 1  <- job file
#   tasks_per_node = 1  <- profile
#   time_min = 10  <- job file
#   constraint = (none)  <- -
#   exclusive = false  <- profile
#   wckey = (none)  <- -
#   account = (none)  <- -
#   reservation = (none)  <- -
#   mode = single  <- job file
#   name = aifbench-smoke  <- job file
#   environment.vars = OMP_NUM_THREADS=1 GLOO_SOCKET_IFNAME=lo  <- profile
export AIFBENCH_ENVIRONMENT='{"system":"local-slurm"}'
export OMP_NUM_THREADS=1
export GLOO_SOCKET_IFNAME=lo

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <TMP>/res/<RUN_ID>/slurm/%j_%t_log.out --error <TMP>/res/<RUN_ID>/slurm/%j_%t_log.err --cpus-per-task=1 <PYTHON> -u -m submitit.core._submit <TMP>/res/<RUN_ID>/slurm
