#!/bin/bash
# The broker image's entrypoint: the shared settings (server.properties) plus this container's node id and
# listeners, storage formatted on first start, then the JVM in this process's place (SIGTERM reaches it and the
# broker shuts down in order).
#   KAFKA_ADVERTISED_HOST      how other containers reach the broker (kafka); they use port 9092
#   KAFKA_EXTERNAL_ADVERTISED  host:port that clients outside see for the port-19092 listener (127.0.0.1:19092)
#   KAFKA_CLUSTER_ID           cluster id for the first format (a random one when unset)
#   KAFKA_HEAP                 JVM heap (768m)
set -euo pipefail
libs=/opt/kafka/libs
data=${KAFKA_DATA_DIR:-/var/lib/kafka}
config=/tmp/server.properties
{
  cat /opt/kafka/server.properties
  echo "node.id=1"
  echo "controller.quorum.voters=1@127.0.0.1:9093"
  echo "listeners=INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092,CONTROLLER://127.0.0.1:9093"
  echo "advertised.listeners=INTERNAL://${KAFKA_ADVERTISED_HOST:-kafka}:9092,EXTERNAL://${KAFKA_EXTERNAL_ADVERTISED:-127.0.0.1:19092}"
  echo "inter.broker.listener.name=INTERNAL"
  echo "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
  echo "log.dirs=${data}/logs"
} >"$config"
log4j="-Dlog4j2.configurationFile=/opt/kafka/log4j2.yaml"
if [ ! -f "${data}/logs/meta.properties" ]; then
  cluster_id=${KAFKA_CLUSTER_ID:-$(java -cp "${libs}/*" kafka.tools.StorageTool random-uuid | tail -n 1)}
  java "$log4j" -cp "${libs}/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$config" >/dev/null
  echo "formatted ${data} for cluster ${cluster_id}"
fi
heap=${KAFKA_HEAP:-768m}
exec java "-Xmx${heap}" "-Xms${heap}" -XX:+UseG1GC -Djava.awt.headless=true "$log4j" -cp "${libs}/*" kafka.Kafka "$config"
