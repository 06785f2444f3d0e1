#!/bin/bash
# usage: scripts/tunneld-rss.sh N mode(kernel|userspace): RSS of iosmux tunneld --simulate N
# with every tunnel up, first run (pairing) and restart; the simulator alone.
IOSMUX=${IOSMUX:-/tmp/iosmux}
N=$1; MODE=$2; ST=/tmp/rss-$N-$MODE; rm -rf $ST
extra=""; [ "$MODE" = userspace ] && extra="--userspace"
measure() {
  $IOSMUX --log-format json tunneld --simulate $N $extra --simulate-state $ST/sim --state-dir $ST >/dev/null 2>$ST.log & P=$!
  while [ "$(grep -c '"msg":"tunnel: up"' $ST.log)" -lt "$N" ]; do sleep 0.05; done
  sleep 1
  rss=$(grep VmRSS /proc/$P/status | awk '{print $2}')
  ms=$(python3 - $ST.log <<'PY'
import sys, json, datetime
ts=lambda l: datetime.datetime.fromisoformat(l["time"].replace("Z","+00:00"))
ls=[json.loads(x) for x in open(sys.argv[1]) if x.startswith("{")]
a=min(ts(l) for l in ls if l["msg"]=="tunneld: API listening")
b=max(ts(l) for l in ls if l["msg"]=="tunnel: up")
print(int((b-a).total_seconds()*1000))
PY
)
  echo "$1 devices=$N mode=$MODE tunneld-start-to-all-listed=${ms}ms rss=$((rss/1024))MiB"
  kill -TERM $P; wait $P; rm -f $ST.log
}
measure first
measure restart
$IOSMUX --log-level warn sim --count $N --simulate-state $ST/sim --control none >/dev/null 2>&1 & P=$!
sleep 3; rss=$(grep VmRSS /proc/$P/status | awk '{print $2}'); echo "sim-only devices=$N rss=$((rss/1024))MiB"; kill $P; wait $P
