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

# setup
# option sources (command line > job file > suite > profile):
#   partition = booster  <- profile
#   qos = (none)  <- -
#   nodes = 2  <- command line
#   tasks_per_node = 4  <- profile
#   time_min = 20  <- command line
#   constraint = (none)  <- -
#   exclusive = true  <- profile
#   wckey = (none)  <- -
#   account = jscbench  <- command line
#   reservation = (none)  <- -
#   mode = array  <- command line
#   name = membw-sweep  <- command line
#   environment.modules = Stages/2025 GCC OpenMPI PyTorch  <- profile
#   environment.python = python3  <- profile
#   environment.vars = NCCL_IB_TIMEOUT=20 NCCL_SOCKET_IFNAME=ib0 GLOO_SOCKET_IFNAME=ib0  <- profile
export AIFBENCH_ENVIRONMENT='{"system":"jupiter-booster","modules":["Stages/2025","GCC","OpenMPI","PyTorch"],"python":"python3"}'
module load Stages/2025 GCC OpenMPI PyTorch
module list 2>&1
export NCCL_IB_TIMEOUT=20
export NCCL_SOCKET_IFNAME=ib0
export GLOO_SOCKET_IFNAME=ib0

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <TMP>/res/<RUN_ID>/slurm/%A_%a_%t_log.out --error <TMP>/res/<RUN_ID>/slurm/%A_%a_%t_log.err --cpus-per-task=72 python3 -u -m submitit.core._submit <TMP>/res/<RUN_ID>/slurm
