#!/usr/bin/env bash
# A real Slurm cluster on one machine, for aifbench's tests and for trying `aifbench submit`
# on a laptop: munge, MariaDB, slurmdbd (accounting), slurmctld and two virtual nodes n1, n2
# (two `slurmd -N`), each advertising 4 GPUs by gres (fake character devices) so that GPU
# requests are accepted, in partition debug.
# The sites' layouts are mirrored too (site_layout): every partition and QoS the shipped system
# profiles name (src/aifbench/systems/*.toml), with their time limits, on a third virtual node s1
# sized like the largest site node (288 CPUs, 8 GPUs), so that `sbatch --test-only` judges each
# site's acceptance script (tests/e2e/test_slurm_sites.py). A partition name the local layout already
# has (debug) stays local; a profile that routes by QoS alone (no partition) maps to partition
# 'sitedefault'.
#
#   scripts/ci/local-slurm.sh start    install what is missing (Debian/Ubuntu), configure, start
#   scripts/ci/local-slurm.sh stop     stop every daemon this script started (by pid file)
#   scripts/ci/local-slurm.sh status   daemons and `sinfo`; exit 0 when the cluster answers
#   scripts/ci/local-slurm.sh env      print `export SLURM_CONF=...` for your shell
#
# Needs root (slurmd runs jobs as their submitting user). Everything lives under
# $AIFBENCH_SLURM_DIR (default: <repo>/.slurm, git-ignored): configuration, the MariaDB data
# directory, Slurm state, logs, pid files and sockets. Nothing system-wide is touched except
# installing the packages, two /etc/hosts entries (n1, n2 -> 127.0.0.1: multi-node rendezvous
# must resolve the first node's name) and — only where no slurm.conf exists yet — a symlink
# /etc/slurm/slurm.conf -> our file, so that sbatch/squeue work without SLURM_CONF.
# Tested with Debian 12's Slurm 22.05.8 and MariaDB 10.11.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${AIFBENCH_SLURM_DIR:-$REPO/.slurm}
CLUSTER=${AIFBENCH_SLURM_CLUSTER:-aifbench}
ETC=$STATE/etc RUN=$STATE/run LOG=$STATE/log
DB_PORT=${AIFBENCH_SLURM_DB_PORT:-13306}
CTLD_PORT=${AIFBENCH_SLURM_CTLD_PORT:-16817}
DBD_PORT=${AIFBENCH_SLURM_DBD_PORT:-16819}
NODE_PORT=${AIFBENCH_SLURM_NODE_PORT:-17001}   # slurmd ports: n1, n2, s1 = NODE_PORT, +1, +2
NODE_CPUS=4           # per virtual node; oversubscribes small machines on purpose
NODE_GPUS=4           # fake gres per virtual node
SITE_CPUS=288         # s1: the largest site node (4x 72-core Grace: JUPITER, Alps)
SITE_GPUS=8           # s1: the most GPUs per node of a site (Karolina's 8 A100, LUMI-G's 8 GCDs)
SITE_DEFAULT_PARTITION=sitedefault
NODES=(n1 n2 s1)
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
export SLURM_CONF=$ETC/slurm.conf

say() { printf 'local-slurm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() { [[ $(id -u) == 0 ]] || die "run as root (slurmd must start jobs as their user)"; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [[ ${#missing[@]} == 0 ]] && return
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them by hand"
    say "installing ${missing[*]}"
    # a temporary policy-rc.d keeps the packages' own services from starting: we run ours
    local policy=/usr/sbin/policy-rc.d made=0
    [[ -e $policy ]] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made=1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    [[ $made == 0 ]] || rm -f "$policy"
}

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local t=0
    until "$@" >/dev/null 2>&1; do
        (( t++ < limit * 5 )) || die "$what did not come up in ${limit}s (logs in $LOG)"
        sleep 0.2
    done
}

site_layout() {  # "partition NAME MAXTIME_MIN" and "qos NAME MAXWALL_MIN" lines from the shipped profiles
    if ! python3 -c 'import tomllib' 2>/dev/null; then
        say "warning: python3 >= 3.11 (tomllib) not found: the sites' partitions and QoS are not mirrored"
        return 0
    fi
    python3 - "$REPO/src/aifbench/systems" "$SITE_DEFAULT_PARTITION" <<'PY'
import pathlib, sys, tomllib
parts, qos = {}, {}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.toml")):
    slurm = tomllib.loads(path.read_text()).get("slurm", {})
    if path.stem == "local-slurm":
        continue
    for name, q in slurm.get("partitions", {}).items():
        part = q.get("partition", name) or sys.argv[2]
        limit = q.get("max_time_min", 0)
        parts[part] = max(parts.get(part, 0), limit)   # a partition several profiles share: the largest
        if q.get("qos"):
            qos[q["qos"]] = max(qos.get(q["qos"], 0), limit)
for name, limit in sorted(parts.items()):
    print("partition", name, limit or "UNLIMITED")
for name, limit in sorted(qos.items()):
    print("qos", name, limit or -1)
PY
}

write_configs() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/spool" "$STATE/ctld" "$STATE/dev"
    local gpu_max=$((NODE_GPUS - 1)) site_gpu_max=$((SITE_GPUS - 1)) host kind name limit
    host=$(hostname -s)
    for i in $(seq 0 "$site_gpu_max"); do   # Slurm 22.05 drops file-less GPUs and refuses regular files
        [[ -c $STATE/dev/fakegpu$i ]] || mknod "$STATE/dev/fakegpu$i" c 1 3
    done
    cat > "$ETC/slurm.conf" <<EOF
# generated by scripts/ci/local-slurm.sh — edits are overwritten on the next start
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
MessageTimeout=10
InactiveLimit=0
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$NODE_PORT CPUs=$NODE_CPUS RealMemory=4000 Gres=gpu:$NODE_GPUS State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((NODE_PORT + 1)) CPUs=$NODE_CPUS RealMemory=4000 Gres=gpu:$NODE_GPUS State=UNKNOWN
NodeName=s1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((NODE_PORT + 2)) CPUs=$SITE_CPUS RealMemory=4000 Gres=gpu:$SITE_GPUS State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=60 State=UP OverSubscribe=NO
EOF
    SITE_QOS=()
    while read -r kind name limit; do   # the sites' partitions on s1 (debug stays local: n1, n2)
        if [[ $kind == partition && $name != debug ]]; then
            echo "PartitionName=$name Nodes=s1 MaxTime=$limit State=UP OverSubscribe=NO" >> "$ETC/slurm.conf"
        elif [[ $kind == qos ]]; then
            SITE_QOS+=("$name:$limit")
        fi
    done < <(site_layout)
    {
        echo "NodeName=n[1-2] Name=gpu File=$STATE/dev/fakegpu[0-$gpu_max]"
        echo "NodeName=s1 Name=gpu File=$STATE/dev/fakegpu[0-$site_gpu_max]"
    } > "$ETC/gres.conf"
    cat > "$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=aifbench-local
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"   # slurmdbd refuses a world-readable file with a password
}

add_hosts() {
    for n in "${NODES[@]}"; do
        grep -Eq "^[^#]*[[:space:]]$n([[:space:]]|\$)" /etc/hosts || echo "127.0.0.1 $n" >> /etc/hosts
    done
}

link_default_conf() {
    mkdir -p /etc/slurm
    local default=/etc/slurm/slurm.conf
    # ours to (re)point: absent, or a dangling link; a link to another running cluster's file stays
    if [[ ! -e $default || $(readlink -f "$default") == "$ETC/slurm.conf" ]]; then
        ln -sfn "$ETC/slurm.conf" "$default"
    else
        say "note: $default exists; export SLURM_CONF=$ETC/slurm.conf to use this cluster"
    fi
}

# munge on its default socket: Slurm 22.05's clients ignore AuthInfo=socket= when talking to
# slurmdbd. A munged that is already running there (a system service) is used, never stopped.
MUNGE_SOCKET=/run/munge/munge.socket.2
start_munge() {
    alive "$RUN/munged.pid" && return
    if [[ -S $MUNGE_SOCKET ]] && munge -n -S "$MUNGE_SOCKET" </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "using the munged already running on $MUNGE_SOCKET"; return
    fi
    [[ -s /etc/munge/munge.key ]] || { mkdir -p /etc/munge; head -c 1024 /dev/urandom > /etc/munge/munge.key; }
    install -d -o munge -g munge -m 0755 /run/munge 2>/dev/null || install -d -m 0755 /run/munge
    munged --force --socket="$MUNGE_SOCKET" --pid-file="$RUN/munged.pid" \
        --log-file="$LOG/munged.log" --seed-file="$STATE/munged.seed"
    wait_for 10 munged test -S "$MUNGE_SOCKET"
}

mysql_cli() { mariadb --no-defaults --socket="$RUN/mysqld.sock" -uroot "$@"; }

start_mariadb() {
    alive "$RUN/mysqld.pid" && return
    if [[ ! -d $STATE/mysql/mysql ]]; then
        mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=root \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed (see $LOG/mariadb-install.log)"
    fi
    # setsid: detach from this shell's job control; the pid file is how we stop it
    setsid mariadbd --no-defaults --datadir="$STATE/mysql" --user=root --port="$DB_PORT" \
        --bind-address=127.0.0.1 --socket="$RUN/mysqld.sock" --pid-file="$RUN/mysqld.pid" \
        --log-error="$LOG/mariadb.log" --innodb-use-native-aio=0 --skip-name-resolve \
        </dev/null >/dev/null 2>&1 &
    wait_for 60 MariaDB mysql_cli -e 'select 1'
    mysql_cli <<'EOF'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'aifbench-local';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'aifbench-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurmdbd() {
    alive "$RUN/slurmdbd.pid" && return
    slurmdbd   # reads slurmdbd.conf beside $SLURM_CONF
    wait_for 60 slurmdbd sacctmgr -n list cluster
}

register_accounting() {
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -n -P list account format=account | grep -qx aifbench \
        || sacctmgr -i add account aifbench description="aifbench local tests" organization=local >/dev/null
    local u q names=normal
    for q in "${SITE_QOS[@]}"; do   # the sites' QoS names, with their wall-time limits
        sacctmgr -n -P list qos format=name | grep -qx "${q%%:*}" || sacctmgr -i add qos "${q%%:*}" >/dev/null
        # DenyOnLimit: a job over the limit is refused at submission (and by --test-only), not left pending
        sacctmgr -i modify qos where name="${q%%:*}" set MaxWall="${q##*:}" Flags=DenyOnLimit >/dev/null || true
        names+=",${q%%:*}"
    done
    for u in root ${SUDO_USER:-}; do
        sacctmgr -n -P list assoc user="$u" account=aifbench format=user | grep -qx "$u" \
            || sacctmgr -i add user "$u" account=aifbench defaultaccount=aifbench >/dev/null
        sacctmgr -i modify user where name="$u" set qos="$names" defaultqos=normal >/dev/null || true
    done
}

start_slurm() {
    alive "$RUN/slurmctld.pid" || slurmctld -f "$ETC/slurm.conf"
    wait_for 30 slurmctld scontrol ping
    for n in "${NODES[@]}"; do
        alive "$RUN/slurmd-$n.pid" || slurmd -f "$ETC/slurm.conf" -N "$n"
    done
    wait_for 60 "nodes ${NODES[*]}" nodes_idle
}

nodes_idle() {  # both nodes registered and usable (idle, mixed or allocated)
    [[ $(sinfo -h -N -o '%N %t' | sort -u | grep -cE '(idle|mix|alloc)$') -ge ${#NODES[@]} ]]  # a node once per partition
}

stop_pid() {  # stop_pid NAME PIDFILE: TERM, wait up to 15 s, then KILL
    local name=$1 file=$2 pid
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && { say "$name did not stop; killing $pid"; kill -9 "$pid"; }
    fi
    rm -f "$file"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports() {  # a daemon of ours not running, but its port taken: another cluster (other state dir)
    local pair name file port
    for pair in "mysqld:$DB_PORT" "slurmdbd:$DBD_PORT" "slurmctld:$CTLD_PORT" "slurmd-n1:$NODE_PORT" \
                "slurmd-n2:$((NODE_PORT + 1))" "slurmd-s1:$((NODE_PORT + 2))"; do
        name=${pair%%:*} port=${pair##*:}
        file=$RUN/$name.pid
        if ! alive "$file" && port_busy "$port"; then
            die "port $port ($name) is taken by another process (a local Slurm cluster from another state directory?): stop it first, or set AIFBENCH_SLURM_*_PORT"
        fi
    done
}

cmd_start() {
    need_root
    check_ports
    install_packages
    write_configs
    add_hosts
    link_default_conf
    start_munge
    start_mariadb
    start_slurmdbd
    register_accounting
    start_slurm
    say "up: cluster '$CLUSTER', nodes n1 n2 ($NODE_CPUS CPUs, gpu:$NODE_GPUS each) in debug, s1 ($SITE_CPUS CPUs," \
        "gpu:$SITE_GPUS) in the sites' partitions; state in $STATE"
}

cmd_stop() {
    # jobs first, so slurmd does not leave steps behind; then daemons in reverse start order
    if alive "$RUN/slurmctld.pid"; then scancel --full --quiet --user=root 2>/dev/null || true; fi
    for n in "${NODES[@]}"; do stop_pid "slurmd $n" "$RUN/slurmd-$n.pid"; done
    stop_pid slurmctld "$RUN/slurmctld.pid"
    stop_pid slurmdbd "$RUN/slurmdbd.pid"
    stop_pid mariadb "$RUN/mysqld.pid"
    stop_pid munged "$RUN/munged.pid"
    say "stopped"
}

cmd_status() {
    local ok=0 f
    for f in munged mysqld slurmdbd slurmctld slurmd-n1 slurmd-n2 slurmd-s1; do
        if alive "$RUN/$f.pid"; then echo "$f: running (pid $(cat "$RUN/$f.pid"))"; else echo "$f: stopped"; ok=1; fi
    done
    [[ $ok == 0 ]] && sinfo -N -o '%N %P %t %c %G' || ok=1
    return $ok
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$ETC/slurm.conf" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
