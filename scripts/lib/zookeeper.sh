# shellcheck shell=bash
# Helpers shared by scripts/run-tests and scripts/run-local: a throw-away CA and a
# standalone ZooKeeper 3.8 (Debian package `zookeeper`) on free loopback ports, plain and
# TLS (client certificates required). Source this file; it defines functions only.

# make_ca DIR — CA, server keystore (key+cert PEM) and client cert/key in DIR.
make_ca() {
    local dir=$1 n
    mkdir -p "$dir"
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
            -subj /CN=nodepool-test-ca 2>/dev/null
        printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=CA:FALSE' \
            'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth,clientAuth' \
            > leaf.ext
        for n in server client; do
            openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" \
                -subj "/CN=nodepool-test-$n" 2>/dev/null
            openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
                -out "$n.pem" -days 30 -extfile leaf.ext 2>/dev/null
        done
        cat server.key server.pem > server-keystore.pem
    )
}

# free_port — prints a free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# zk_ruok PORT — succeeds when ZooKeeper on 127.0.0.1:PORT answers imok.
zk_ruok() {
    local reply
    reply=$(timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$1"'; printf ruok >&3; cat <&3' 2>/dev/null) || true
    [ "$reply" = imok ]
}

# zk_start DIR — starts ZooKeeper with dataDir DIR/data and CA DIR/certs; sets
# ZK_PLAIN_PORT, ZK_TLS_PORT, ZK_PID, ZK_CERTS and waits (max 60 s) until it answers.
zk_start() {
    local dir=$1 jars=/usr/share/java cp j i
    ZK_CERTS=$dir/certs
    [ -f "$ZK_CERTS/ca.pem" ] || make_ca "$ZK_CERTS"
    ZK_PLAIN_PORT=$(free_port)
    ZK_TLS_PORT=$(free_port)
    mkdir -p "$dir/data"
    cat > "$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PLAIN_PORT
clientPortAddress=127.0.0.1
secureClientPort=$ZK_TLS_PORT
secureClientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
forceSync=no
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=60000
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=$ZK_CERTS/server-keystore.pem
ssl.keyStore.type=PEM
ssl.trustStore.location=$ZK_CERTS/ca.pem
ssl.trustStore.type=PEM
ssl.clientAuth=need
CFG
    cat > "$dir/log4j.properties" <<'LOG'
log4j.rootLogger=WARN, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %m%n
LOG
    cp=$dir
    for j in zookeeper zookeeper-jute netty-codec netty-resolver netty-transport-native-unix-common \
        slf4j-api slf4j-log4j12 log4j-1.2; do
        cp=$cp:$jars/$j.jar
    done
    # NODEPOOL_ZK_HEAP and NODEPOOL_ZK_JVM_OPTS (which replaces the GC flag) as for the
    # test harness's own ZooKeeper; benchmarks use them (scripts/bench-list).
    # shellcheck disable=SC2086
    java -Xmx"${NODEPOOL_ZK_HEAP:-512m}" ${NODEPOOL_ZK_JVM_OPTS:--XX:+UseSerialGC} \
        -Dzookeeper.jmx.log4j.disable=true -cp "$cp" \
        org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" \
        </dev/null >>"$dir/zookeeper.log" 2>&1 &
    ZK_PID=$!
    for i in $(seq 1 600); do
        if zk_ruok "$ZK_PLAIN_PORT"; then
            return 0
        fi
        if ! kill -0 "$ZK_PID" 2>/dev/null; then
            echo "ZooKeeper exited during start-up; log:" >&2
            tail -20 "$dir/zookeeper.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "ZooKeeper did not answer within 60 s; log:" >&2
    tail -20 "$dir/zookeeper.log" >&2
    return 1
}

# zk_stop — stops the ZooKeeper started by zk_start (if any).
zk_stop() {
    if [ -n "${ZK_PID:-}" ] && kill -0 "$ZK_PID" 2>/dev/null; then
        kill "$ZK_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$ZK_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$ZK_PID" 2>/dev/null || true
        wait "$ZK_PID" 2>/dev/null || true
    fi
    ZK_PID=
}

# zk_export_test_env — exports the NODEPOOL_TEST_ZK* variables for the test harness.
zk_export_test_env() {
    export NODEPOOL_TEST_ZK=127.0.0.1:$ZK_PLAIN_PORT
    export NODEPOOL_TEST_ZK_TLS=127.0.0.1:$ZK_TLS_PORT
    export NODEPOOL_TEST_ZK_CA=$ZK_CERTS/ca.pem
    export NODEPOOL_TEST_ZK_CERT=$ZK_CERTS/client.pem
    export NODEPOOL_TEST_ZK_KEY=$ZK_CERTS/client.key
}
