#!/usr/bin/env bash
# Resolve the Apache Kafka 4.x server jars from Maven Central (cached in ~/.m2) and write the
# Java classpath to .build/kafka/classpath.txt (relative to the repo root).
#
# aisuper.platform.embedded reads that file to run a single-node KRaft broker with
#   java -cp "$(cat .build/kafka/classpath.txt)" kafka.Kafka server.properties
#
# Usage: infra/kafka/fetch.sh [--force]
#   --force          re-run Maven even when the classpath file is up to date
# Environment:
#   MVN              Maven command (default: mvn)
#   KAFKA_VERSION    override the Kafka version pinned in infra/kafka/pom.xml
#
# Idempotent: when the classpath file is newer than pom.xml and every jar in it exists, it
# returns at once without starting Maven.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
pom="${script_dir}/pom.xml"
out_dir="${repo_root}/.build/kafka"
out_file="${out_dir}/classpath.txt"
mvn_cmd="${MVN:-mvn}"
force=0

for arg in "$@"; do
  case "${arg}" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "fetch.sh: unknown argument: ${arg}" >&2
      exit 2
      ;;
  esac
done

log() { echo "[kafka-fetch] $*" >&2; }
jar_count() { awk -F: '{ n += NF } END { print n + 0 }' "${out_file}"; }

classpath_is_current() {
  [[ -s "${out_file}" ]] || return 1
  [[ "${out_file}" -nt "${pom}" ]] || return 1
  [[ -z "${KAFKA_VERSION:-}" ]] || grep -q "/kafka_2.13-${KAFKA_VERSION}.jar" "${out_file}" || return 1
  local jar
  local -a jars
  IFS=':' read -r -a jars < "${out_file}"
  for jar in "${jars[@]}"; do
    [[ -f "${jar}" ]] || return 1
  done
  return 0
}

if [[ "${force}" -eq 0 ]] && classpath_is_current; then
  log "up to date: ${out_file#"${repo_root}"/} ($(jar_count) jars)"
  exit 0
fi

if ! command -v "${mvn_cmd}" > /dev/null 2>&1; then
  log "error: Maven ('${mvn_cmd}') is not on PATH; install it (e.g. apt-get install maven)"
  exit 1
fi
if ! command -v java > /dev/null 2>&1; then
  log "warning: no 'java' on PATH; the jars are fetched, but running Kafka 4.x needs Java 17+"
fi

mkdir -p "${out_dir}"
tmp_file="$(mktemp "${out_dir}/classpath.XXXXXX")"
trap 'rm -f "${tmp_file}"' EXIT

mvn_args=(-B -q -Dstyle.color=never -f "${pom}" dependency:build-classpath "-Dmdep.outputFile=${tmp_file}")
if [[ -n "${KAFKA_VERSION:-}" ]]; then
  mvn_args+=("-Dkafka.version=${KAFKA_VERSION}")
fi

log "resolving Apache Kafka jars with Maven (first run downloads ~40 MB into ~/.m2) ..."
start_s=${SECONDS}
mvn_log="${out_dir}/mvn.log"
# Maven -q still prints ANSI resets (and its errors) on stdout: keep them in a log file and show
# that file only when Maven fails.
if ! "${mvn_cmd}" "${mvn_args[@]}" > "${mvn_log}" 2>&1; then
  log "error: Maven failed; its output (${mvn_log#"${repo_root}"/}):"
  sed 's/\x1b\[[0-9;]*m//g' "${mvn_log}" >&2
  exit 1
fi

if [[ ! -s "${tmp_file}" ]]; then
  log "error: Maven wrote no classpath"
  exit 1
fi
# Maven writes the classpath without a trailing newline; keep it that way (one line).
chmod 0644 "${tmp_file}"
mv -f "${tmp_file}" "${out_file}"
trap - EXIT

kafka_jar="$(tr ':' '\n' < "${out_file}" | grep -m1 '/kafka_2.13-' || true)"
log "wrote ${out_file#"${repo_root}"/}: $(jar_count) jars," \
  "$(basename "${kafka_jar:-kafka_2.13-?.jar}" .jar), in $((SECONDS - start_s)) s"
