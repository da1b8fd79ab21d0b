#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) broker on loopback, no Docker.
# Needs only java (17+) and mvn; jars are resolved from Maven Central into
# <repo>/.cache/kafka/$KAFKA_VERSION/lib (Maven repo in <repo>/.cache/m2).
#
# Usage: deploy/local/kafka.sh fetch|start|stop [--wipe]|status|wait
#        deploy/local/kafka.sh topics-create NAME PARTITIONS
#        deploy/local/kafka.sh topics [TopicCommand args...]   (e.g. topics --list)
#
# Environment:
#   KAFKA_VERSION          default 4.1.1
#   KAFKA_PORT             default 9092  (PLAINTEXT://127.0.0.1:$KAFKA_PORT)
#   KAFKA_CONTROLLER_PORT  default 9093
#   KAFKA_STATE_DIR        default <repo>/.cache/kafka-run (config, data, log, pid)
#   KAFKA_SASL             empty (default): the client listener is PLAINTEXT, no authentication.
#                          plain: it is SASL_PLAINTEXT with the PLAIN mechanism; scram: also
#                          SCRAM-SHA-256 and SCRAM-SHA-512 for the same users (their SCRAM
#                          credentials are written when the storage is formatted: wipe to change).
#                          The controller listener stays PLAINTEXT; brokers talk over the SASL
#                          listener with PLAIN as the first user.
#   KAFKA_SASL_USERS       name:password,... default admin:admin-secret,stream-app:stream-app-secret
#                          (the first is the broker's own and the tools' identity; names and
#                          passwords: letters, digits, . _ -)
#   KAFKA_WAIT_SECONDS     default 90
#   KAFKA_HEAP_OPTS        default "-Xmx768m -Xms256m"
#   LOG4J_VERSION          slf4j->log4j2 binding version, default 2.24.3
#   JAVA_HOME / JAVA, MVN  java and maven executables
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_WAIT_SECONDS="${KAFKA_WAIT_SECONDS:-90}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx768m -Xms256m}"
LOG4J_VERSION="${LOG4J_VERSION:-2.24.3}"   # for log4j-slf4j-impl: Kafka 4.0-4.4 all use slf4j 1.7
KAFKA_SASL="${KAFKA_SASL:-}"
KAFKA_SASL_USERS="${KAFKA_SASL_USERS:-admin:admin-secret,stream-app:stream-app-secret}"
HOST=127.0.0.1

CACHE="$ROOT/.cache/kafka/$KAFKA_VERSION"
LIB="$CACHE/lib"
M2="$ROOT/.cache/m2"
STATE="${KAFKA_STATE_DIR:-$ROOT/.cache/kafka-run}"
# Absolute: it ends up in server.properties and is matched against the broker's command line.
[[ "$STATE" = /* ]] || STATE="$PWD/$STATE"
PIDFILE="$STATE/kafka.pid"
LOGFILE="$STATE/kafka.log"
CONFIG="$STATE/server.properties"
DATA="$STATE/data"

if [[ -n "${JAVA:-}" ]]; then :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"
else JAVA=java; fi
MVN="${MVN:-mvn}"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { printf '%s' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Take an exclusive lock on a file for the rest of the process, on the given fd.
lock() {  # lock FD FILE
    command -v flock >/dev/null || return 0
    eval "exec $1>\"\$2\""
    flock "$1"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# ---------------------------------------------------------------- SASL

SASL_NAMES=() SASL_PASSWORDS=()
sasl_setup() {
    case "$KAFKA_SASL" in
        "") return 0 ;;
        plain|scram) ;;
        *) die "KAFKA_SASL must be empty, plain or scram (got '$KAFKA_SASL')" ;;
    esac
    local entry name pass
    local -a entries
    IFS=',' read -ra entries <<< "$KAFKA_SASL_USERS"
    for entry in "${entries[@]}"; do
        [[ -n "$entry" ]] || continue
        name="${entry%%:*}" pass="${entry#*:}"
        [[ "$entry" == *:* && "$name" =~ ^[A-Za-z0-9._-]+$ && "$pass" =~ ^[A-Za-z0-9._-]+$ ]] \
            || die "KAFKA_SASL_USERS: expected name:password,... with letters, digits, . _ - (entry ${#SASL_NAMES[@]})"
        SASL_NAMES+=("$name") SASL_PASSWORDS+=("$pass")
    done
    ((${#SASL_NAMES[@]})) || die "KAFKA_SASL_USERS has no users"
}

sasl_mechanisms() {
    if [[ "$KAFKA_SASL" == scram ]]; then echo PLAIN,SCRAM-SHA-256,SCRAM-SHA-512; else echo PLAIN; fi
}

# The PLAIN login module both authenticates clients (user_NAME="password") and
# logs the broker into its own inter-broker listener (username/password).
plain_jaas() {
    local i out
    out="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"${SASL_NAMES[0]}\" password=\"${SASL_PASSWORDS[0]}\""
    for i in "${!SASL_NAMES[@]}"; do
        out+=" user_${SASL_NAMES[$i]}=\"${SASL_PASSWORDS[$i]}\""
    done
    printf '%s;' "$out"
}

listener_name() { if [[ -n "$KAFKA_SASL" ]]; then echo SASL_PLAINTEXT; else echo PLAINTEXT; fi; }

# ---------------------------------------------------------------- fetch

fetched() { [[ -f "$CACHE/.fetched" && -d "$LIB" ]]; }

write_pom() {  # write_pom EXTRA_DEPENDENCIES_XML
    cat > "$CACHE/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.stream-app</groupId>
  <artifactId>kafka-local-$KAFKA_VERSION</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <!-- TopicCommand & co. Connect runtime (jetty/jersey) is only needed by connect tools. -->
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
        <exclusion><groupId>com.fasterxml.jackson.jakarta.rs</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <!-- slf4j 1.7 -> log4j2 binding; log4j-api/core versions stay whatever Kafka depends on. -->
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version>
      <exclusions><exclusion><groupId>org.apache.logging.log4j</groupId><artifactId>*</artifactId></exclusion></exclusions>
    </dependency>$1
  </dependencies>
</project>
POM
}

write_log4j() {  # write_log4j FILE LEVEL -- everything to stderr (the broker's is redirected to kafka.log)
    local tmp="$1.$$"
    cat > "$tmp" <<L4J
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $2
rootLogger.appenderRef.err.ref = err
L4J
    mv -f "$tmp" "$1"
}

mvn_copy_deps() {  # mvn_copy_deps OUTDIR
    # Output goes to a file: Debian's mvn prints stray ANSI codes even with -B -q,
    # and errors are on stdout, so it is only shown when something failed.
    rm -rf "$1"
    if ! "$MVN" -B -q -ntp -f "$CACHE/pom.xml" -Dmaven.repo.local="$M2" \
            org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$1" >"$CACHE/mvn.log" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$CACHE/mvn.log" | grep -v '^\s*$' | tail -n 30 >&2
        rm -rf "$1"
        die "maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see $CACHE/mvn.log; try another KAFKA_VERSION)"
    fi
}

cmd_fetch() {
    fetched && return 0
    mkdir -p "$CACHE"
    lock 8 "$ROOT/.cache/kafka/.fetch.lock"   # global: all versions share the Maven repo
    fetched && return 0   # another process fetched while we waited for the lock
    command -v "$MVN" >/dev/null || die "maven ($MVN) not found"
    local t0 tmp
    t0=$(now)
    log "fetching kafka $KAFKA_VERSION jars…"
    tmp="$CACHE/lib.tmp.$$"
    rm -rf "$LIB" "$CACHE"/lib.tmp.*   # leftovers of an interrupted fetch
    write_pom ""
    mvn_copy_deps "$tmp"
    # Kafka 4.1+ depends on log4j-core itself, 4.0.x does not: add it only when missing.
    if ! compgen -G "$tmp/log4j-core-*.jar" >/dev/null; then
        write_pom "
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version>
    </dependency>"
        mvn_copy_deps "$tmp"
    fi
    mv "$tmp" "$LIB"
    write_log4j "$CACHE/log4j2-broker.properties" INFO
    write_log4j "$CACHE/log4j2-tools.properties" WARN
    date -u +%FT%TZ > "$CACHE/.fetched"
    log "fetched $(ls "$LIB" | wc -l) jars ($(du -sh "$LIB" | cut -f1)) into ${LIB#"$ROOT"/} in $(since "$t0")s"
}

# ---------------------------------------------------------------- java helpers

# Short-lived tool JVMs: C1 only + serial GC start noticeably faster.
run_tool() {  # run_tool CLASS ARGS...
    local cls="$1"; shift
    "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$CACHE/log4j2-tools.properties" \
        -cp "$LIB/*" "$cls" "$@"
}

admin_config() {  # admin_config TIMEOUT_MS -> path of a client config file
    local f="$CACHE/admin-$1.properties"
    if [[ -n "$KAFKA_SASL" ]]; then
        # Holds a password: per state dir, owner-only, rewritten each time.
        mkdir -p "$STATE"
        f="$STATE/admin-$1.properties"
        (umask 077
         {
             printf 'request.timeout.ms=%s\ndefault.api.timeout.ms=%s\n' "$1" "$1"
             printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.jaas.config=%s\n' \
                 "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"${SASL_NAMES[0]}\" password=\"${SASL_PASSWORDS[0]}\";"
         } > "$f.$$")
        mv -f "$f.$$" "$f"
    elif [[ ! -f "$f" ]]; then
        printf 'request.timeout.ms=%s\ndefault.api.timeout.ms=%s\n' "$1" "$1" > "$f.$$"
        mv -f "$f.$$" "$f"
    fi
    printf '%s' "$f"
}

topics() {  # topics TIMEOUT_MS ARGS...
    local ms="$1"; shift
    run_tool org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$HOST:$KAFKA_PORT" --command-config "$(admin_config "$ms")" "$@"
}

# ---------------------------------------------------------------- process state

# Zombies count as dead: under a PID 1 that does not reap orphans, kill -0
# keeps succeeding on a broker that has already exited.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [[ -r /proc/$1/stat ]] || return 0
    local stat
    stat=$(<"/proc/$1/stat")
    [[ "${stat##*) }" != Z* ]]
}

# Prints the pid if our broker for $STATE is alive. Checks the command line too,
# so a stale pid file whose pid got reused does not count as "running".
running_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid=$(<"$PIDFILE")
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$CONFIG" || return 1
    fi
    printf '%s' "$pid"
}

log_tail() {
    [[ -f "$LOGFILE" ]] || return 0
    log "last lines of $LOGFILE:"
    tail -n "${1:-40}" "$LOGFILE" >&2
}

# ---------------------------------------------------------------- start / wait / stop

write_config() {
    local name
    name=$(listener_name)
    (umask 077; : > "$CONFIG")   # may hold passwords
    cat > "$CONFIG" <<PROPS
# Generated by deploy/local/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=$name://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=$name://$HOST:$KAFKA_PORT
inter.broker.listener.name=$name
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$name:$name
log.dirs=$DATA

num.partitions=8
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a SIGKILL the restarted broker cannot register until its old session
# expires (default 9 s); keep that short.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000

# Room for 2 MiB messages (clients must also raise max.request.size etc.).
message.max.bytes=4194304
replica.fetch.max.bytes=4194304
socket.request.max.bytes=104857600
PROPS
    [[ -n "$KAFKA_SASL" ]] || return 0
    {
        echo
        echo "# KAFKA_SASL=$KAFKA_SASL"
        echo "sasl.enabled.mechanisms=$(sasl_mechanisms)"
        echo "sasl.mechanism.inter.broker.protocol=PLAIN"
        echo "listener.name.sasl_plaintext.plain.sasl.jaas.config=$(plain_jaas)"
        if [[ "$KAFKA_SASL" == scram ]]; then
            echo "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
            echo "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
        fi
    } >> "$CONFIG"
}

format_storage() {
    [[ -f "$DATA/meta.properties" ]] && return 0
    local cid=-
    # Random base64url Uuid; Kafka never issues ids starting with '-' (they look like CLI flags).
    while [[ "$cid" == -* ]]; do
        cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    log "formatting storage in $DATA (cluster id $cid)"
    local out i mech
    local -a scram=()
    if [[ "$KAFKA_SASL" == scram ]]; then
        # SCRAM credentials live in the metadata log; the first record can carry them.
        for i in "${!SASL_NAMES[@]}"; do
            for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
                scram+=(--add-scram "$mech=[name=${SASL_NAMES[$i]},password=${SASL_PASSWORDS[$i]}]")
            done
        done
    fi
    out=$(run_tool kafka.tools.StorageTool format -t "$cid" -c "$CONFIG" "${scram[@]}" 2>&1) \
        || { printf '%s\n' "$out" >&2; die "storage format failed"; }
}

cmd_wait() {
    local t0 pid
    t0=$(now)
    while :; do
        if [[ -f "$PIDFILE" ]] && ! running_pid >/dev/null; then
            log_tail; die "broker process exited (state dir $STATE)"
        fi
        # TCP first (cheap), then a real metadata round trip through the admin client.
        if port_open "$KAFKA_PORT" && topics 5000 --list >/dev/null 2>&1; then
            break
        fi
        if awk -v a="$t0" -v b="$(now)" -v w="$KAFKA_WAIT_SECONDS" 'BEGIN { exit !(b - a >= w) }'; then
            log_tail; die "broker on $HOST:$KAFKA_PORT not ready after ${KAFKA_WAIT_SECONDS}s"
        fi
        sleep 0.5
    done
    pid=$(running_pid || echo external)
    log "broker up on $HOST:$KAFKA_PORT${KAFKA_SASL:+ (SASL_PLAINTEXT, $(sasl_mechanisms))} (pid $pid) in $(since "${START_T0:-$t0}")s"
}

cmd_start() {
    START_T0=$(now)
    mkdir -p "$STATE"
    lock 9 "$STATE/.lock"
    local pid p
    if pid=$(running_pid); then
        log "already running on $HOST:$KAFKA_PORT (pid $pid)"
        return 0
    fi
    cmd_fetch
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        ! port_open "$p" || die "port $HOST:$p is already in use (another broker? set KAFKA_PORT/KAFKA_CONTROLLER_PORT)"
    done
    write_config
    format_storage
    printf '\n==== %s starting kafka %s\n' "$(date -u +%FT%TZ)" "$KAFKA_VERSION" >> "$LOGFILE"
    # setsid: survive the caller's process group (Ctrl-C, test runner teardown).
    # All fds redirected and lock fds closed, or a caller reading our output
    # through a pipe would hang until the broker exits.
    # shellcheck disable=SC2086
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$PIDFILE" \
        "$JAVA" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$CACHE/log4j2-broker.properties" \
        -cp "$LIB/*" kafka.Kafka "$CONFIG" \
        </dev/null >>"$LOGFILE" 2>&1 8>&- 9>&- &
    for _ in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
    log "starting kafka $KAFKA_VERSION (pid $(cat "$PIDFILE" 2>/dev/null || echo ?)), log: $LOGFILE"
    cmd_wait
}

cmd_stop() {
    local wipe=0 pid
    [[ "${1:-}" == --wipe ]] && wipe=1
    [[ -d "$STATE" ]] || { log "not running"; return 0; }
    lock 9 "$STATE/.lock"
    if pid=$(running_pid); then
        log "stopping broker (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            log "still alive after 30s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while alive "$pid"; do sleep 0.1; done
        fi
        log "stopped"
    else
        log "not running"
    fi
    rm -f "$PIDFILE"
    if ((wipe)); then
        # Remove only what we create, so a mistaken KAFKA_STATE_DIR=/tmp is harmless.
        rm -rf "$DATA" "$CONFIG" "$LOGFILE" "$STATE/.lock" "$STATE"/admin-*.properties
        rmdir "$STATE" 2>/dev/null || true
        log "wiped $STATE"
    fi
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        # Report the port the broker was started with, not the current $KAFKA_PORT.
        echo "running (pid $pid, $(sed -n 's|^advertised.listeners=[A-Z_]*://||p' "$CONFIG"), state $STATE)"
    else
        echo "stopped"
        return 1
    fi
}

cmd_topics_create() {
    (($# == 2)) || die "usage: kafka.sh topics-create NAME PARTITIONS"
    cmd_fetch
    topics 30000 --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1 >&2
}

cmd_topics() {
    cmd_fetch
    topics 30000 "$@"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; }

sasl_setup
cmd="${1:-}"
shift || true
case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status ;;
    wait) cmd_fetch; cmd_wait ;;
    topics-create) cmd_topics_create "$@" ;;
    topics) cmd_topics "$@" ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
esac
