# Sourced by infra/local.sh and infra/cluster.sh: the one log4j2 configuration a broker of
# either runs with (a size-rolled server.log, Kafka's own client classes at warn).

# kafka_log4j DIR SIZE writes DIR/log4j2.properties: DIR/log/server.log, rolled at SIZE (e.g.
# 50MB), two old files kept.
kafka_log4j() {
  local dir=$1 size=$2
  cat >"$dir/log4j2.properties" <<PROPS
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $dir/log/server.log
appender.file.filePattern = $dir/log/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = $size
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.org.name = org.apache.kafka
logger.org.level = warn
PROPS
}
