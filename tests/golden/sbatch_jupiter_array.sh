#!/bin/bash

# Parameters
#SBATCH --account=jscbench
#SBATCH --array=0-1%1
#SBATCH --cpus-per-task=72
#SBATCH --error=<TMP>/res/<RUN_ID>/slurm/%A_%a_0_log.err
#SBATCH --exclusive
#SBATCH --gres=gpu:4
#SBATCH --job-name=membw-sweep
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --open-mode=append
#SBATCH --output=<TMP>/res/<RUN_ID>/slurm/%A_%a_0_log.out
#SBATCH --partition=booster
#SBATCH --requeue
#SBATCH --signal=USR2@90
#SBATCH --time=20
#SBATCH --wckey=submitit

# setup
export NCCL_IB_TIMEOUT=20
export NCCL_SOCKET_IFNAME=ib0
export GLOO_SOCKET_IFNAME=ib0

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <TMP>/res/<RUN_ID>/slurm/%A_%a_%t_log.out --error <TMP>/res/<RUN_ID>/slurm/%A_%a_%t_log.err --cpus-per-task=72 <PYTHON> -u -m submitit.core._submit <TMP>/res/<RUN_ID>/slurm
