#!/usr/bin/env bash
# Cross-client checks: RabbitMQ's tutorials through pika, and hello world + confirms through
# RabbitMQ's Java client, against a real `warren server` started here on a free port.
# Usage: tests/interop/run.sh [path/to/warren]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
warren=${1:-$here/../../target/debug/warren}
. "$here/../lib/node.sh"
start_warren "$warren" interop

# pika: the Debian package for the system Python, else PyPI for whatever python3 is first.
if /usr/bin/python3 -c 'import pika' 2>/dev/null; then
  py=/usr/bin/python3
elif python3 -c 'import pika' 2>/dev/null; then
  py=python3
else
  python3 -m pip install -q 'pika==1.3.2'
  py=python3
fi
"$py" "$here/pika_tutorials.py" "$port"

# The Java client from Debian (librabbitmq-client-java); skipped with a reason if absent.
jar=/usr/share/java/amqp-client.jar
slf4j=/usr/share/java/slf4j-api.jar
if [ -f "$jar" ] && command -v javac >/dev/null; then
  out="$data/java"
  mkdir -p "$out"
  javac -d "$out" -cp "$jar" "$here/HelloConfirms.java"
  java -cp "$jar:$slf4j:$out" HelloConfirms "$port"
else
  echo "java: SKIPPED (install default-jdk-headless and librabbitmq-client-java)"
fi
