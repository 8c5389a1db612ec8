#!/bin/sh
# post-manifest.sh: post a build manifest to the autodeploy receiver at the end of a CI build.
#
# POSIX sh (dash, bash, busybox ash); needs only openssl, curl, date and mktemp, which the
# AWS CodeBuild standard images have. No jq.
#
# Configuration, all from the environment:
#
#   AUTODEPLOY_URL       receiver base URL, e.g. https://autodeploy.example.com (required)
#   AUTODEPLOY_NAMESPACE the tenant namespace: the manifest goes to
#                        /v1/namespaces/<namespace>/manifests, signed with that namespace's
#                        key (default: none, /v1/manifests with the cluster-wide key)
#   AUTODEPLOY_KEY       the manifest signing key (required, or AUTODEPLOY_KEY_FILE). The
#                        manager's key file may hold two keys during a rotation; a sender signs
#                        with one. Surrounding whitespace is ignored, as the manager ignores it.
#   AUTODEPLOY_KEY_FILE  a file holding that one key (instead of AUTODEPLOY_KEY)
#   APPLICATION          application name, e.g. shop-api (required)
#   BUILD_ID             unique build id (default: $CODEBUILD_BUILD_ID)
#   BUILD_NUMBER         positive integer ordering the builds (default: $CODEBUILD_BUILD_NUMBER)
#   IMAGE                image reference pushed, with a tag and/or digest (or IMAGE_URI)
#   IMAGES               images of further containers built by the same build, for
#                        Environments that deploy several containers together
#                        (spec.ecs.containers): container=image pairs separated by spaces,
#                        e.g. "worker=123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-worker:b142"
#                        (default: none). It becomes the manifest's images field.
#   COMMIT               source revision (default: $CODEBUILD_RESOLVED_SOURCE_VERSION)
#   BRANCH               source branch (default: the branch of $CODEBUILD_WEBHOOK_HEAD_REF when
#                        that is refs/heads/<branch>). Environments with spec.branch only take
#                        builds of that branch.
#   FINISHED_AT          RFC 3339 time the build finished (default: now, UTC)
#
# The manifest is signed with HMAC-SHA256 over "<unix seconds>.<body>" and POSTed to
# $AUTODEPLOY_URL/v1/manifests. Connection failures, timeouts and 5xx answers (503 means
# "retry") are retried; a 4xx answer is final. The receiver's reply is printed.
#
# Exit status: 0 when the receiver answered 2xx (202: recorded; 200: a duplicate of a build it
# already has, an older build, or no Environment follows this application and branch), 1 when it
# answered anything else (401 wrong key or clock, 409 another build already has this number, 400
# a bad field, ...) or could not be reached, 2 when the configuration is wrong (nothing is sent).

set -eu

prog=post-manifest

die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 2
}

# require NAME VALUE: VALUE must be set.
require() {
	[ -n "$2" ] || die "$1 is required but not set"
}

# check_chars NAME VALUE: VALUE goes into the JSON body verbatim, so it must not hold a double
# quote, a backslash or a control character (newline, tab, ...).
check_chars() {
	case $2 in
	*[\"\\]*) die "$1 must not contain a double quote or a backslash" ;;
	*[[:cntrl:]]*) die "$1 must not contain control characters such as newlines or tabs" ;;
	esac
}

# trim VALUE: print VALUE without leading and trailing whitespace.
trim() {
	_v=$1
	while :; do
		case $_v in
		[[:space:]]*) _v=${_v#?} ;;
		*) break ;;
		esac
	done
	while :; do
		case $_v in
		*[[:space:]]) _v=${_v%?} ;;
		*) break ;;
		esac
	done
	printf '%s' "$_v"
}

for tool in openssl curl date mktemp; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not installed"
done

# --- Configuration --------------------------------------------------------------------------

url=${AUTODEPLOY_URL:-}
namespace=${AUTODEPLOY_NAMESPACE:-}
application=${APPLICATION:-}
build_id=${BUILD_ID:-${CODEBUILD_BUILD_ID:-}}
build_number=${BUILD_NUMBER:-${CODEBUILD_BUILD_NUMBER:-}}
image=${IMAGE:-${IMAGE_URI:-}}
commit=${COMMIT:-${CODEBUILD_RESOLVED_SOURCE_VERSION:-}}
branch=${BRANCH:-}
if [ -z "$branch" ]; then
	case ${CODEBUILD_WEBHOOK_HEAD_REF:-} in
	refs/heads/?*) branch=${CODEBUILD_WEBHOOK_HEAD_REF#refs/heads/} ;;
	esac
fi
finished_at=${FINISHED_AT:-}
images=${IMAGES:-}

require AUTODEPLOY_URL "$url"
require APPLICATION "$application"
[ -n "$build_id" ] || die "BUILD_ID is required but not set (nor CODEBUILD_BUILD_ID)"
[ -n "$build_number" ] || die "BUILD_NUMBER is required but not set (nor CODEBUILD_BUILD_NUMBER)"
[ -n "$image" ] || die "IMAGE is required but not set (nor IMAGE_URI)"

check_chars AUTODEPLOY_URL "$url"
case $url in
http://?* | https://?*) ;;
*) die "AUTODEPLOY_URL must start with http:// or https:// (got: $url)" ;;
esac
while :; do
	case $url in
	*/) url=${url%/} ;;
	*) break ;;
	esac
done
case $namespace in
'') ;;
*[!a-z0-9-]* | -* | *-) die "AUTODEPLOY_NAMESPACE must be a namespace name: lowercase letters, digits and '-' (got: $namespace)" ;;
esac

check_chars APPLICATION "$application"
check_chars BUILD_ID "$build_id"
check_chars IMAGE "$image"
check_chars COMMIT "$commit"
check_chars BRANCH "$branch"
check_chars FINISHED_AT "$finished_at"
check_chars IMAGES "$images"

# images_json: the IMAGES pairs as the JSON object of the images field.
images_json=
set -f # the pairs are split on spaces, never expanded as file names
for pair in $images; do
	name=${pair%%=*}
	img=${pair#*=}
	case $pair in
	*=*) ;;
	*) die "IMAGES must be container=image pairs separated by spaces (got: $pair)" ;;
	esac
	case $name in
	'' | *[!A-Za-z0-9_-]*) die "IMAGES: $name is not a container name (letters, digits, '_' and '-')" ;;
	esac
	[ -n "$img" ] || die "IMAGES: no image for container $name"
	case $images_json in
	*\"$name\":*) die "IMAGES names container $name more than once" ;;
	esac
	[ -z "$images_json" ] || images_json="$images_json,"
	images_json=$(printf '%s"%s":"%s"' "$images_json" "$name" "$img")
done
set +f

# buildNumber is written into the JSON unquoted: digits only, no leading zero.
case $build_number in
*[!0-9]* | 0*) die "BUILD_NUMBER must be a positive integer without leading zeros (got: $build_number)" ;;
esac

if [ -z "$finished_at" ]; then
	finished_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi

# The key: from AUTODEPLOY_KEY or the only non-empty line of AUTODEPLOY_KEY_FILE.
if [ -n "${AUTODEPLOY_KEY:-}" ] && [ -n "${AUTODEPLOY_KEY_FILE:-}" ]; then
	die "set only one of AUTODEPLOY_KEY and AUTODEPLOY_KEY_FILE"
elif [ -n "${AUTODEPLOY_KEY:-}" ]; then
	key=$(trim "$AUTODEPLOY_KEY")
	[ -n "$key" ] || die "AUTODEPLOY_KEY is blank"
	key_source=AUTODEPLOY_KEY
elif [ -n "${AUTODEPLOY_KEY_FILE:-}" ]; then
	[ -r "$AUTODEPLOY_KEY_FILE" ] || die "AUTODEPLOY_KEY_FILE $AUTODEPLOY_KEY_FILE is not a readable file"
	key=
	nkeys=0
	while IFS= read -r line || [ -n "$line" ]; do
		line=$(trim "$line")
		[ -n "$line" ] || continue
		key=$line
		nkeys=$((nkeys + 1))
	done <"$AUTODEPLOY_KEY_FILE"
	[ "$nkeys" -gt 0 ] || die "AUTODEPLOY_KEY_FILE $AUTODEPLOY_KEY_FILE holds no key"
	[ "$nkeys" -eq 1 ] || die "AUTODEPLOY_KEY_FILE $AUTODEPLOY_KEY_FILE holds $nkeys keys; a sender signs with exactly one: give it a file with only that key"
	key_source=AUTODEPLOY_KEY_FILE
else
	die "AUTODEPLOY_KEY (or AUTODEPLOY_KEY_FILE) is required but not set"
fi
case $key in
*[[:cntrl:]]*) die "the key in $key_source must not contain control characters" ;;
esac
[ "${#key}" -ge 16 ] || die "the key in $key_source is shorter than 16 bytes; the manager accepts no such key"

# --- Manifest and signature -----------------------------------------------------------------

# Compact JSON; every value was checked above, so none needs escaping.
body=$(printf '{"application":"%s","buildId":"%s","buildNumber":%s,"image":"%s"' \
	"$application" "$build_id" "$build_number" "$image")
if [ -n "$commit" ]; then
	body=$(printf '%s,"commit":"%s"' "$body" "$commit")
fi
if [ -n "$branch" ]; then
	body=$(printf '%s,"branch":"%s"' "$body" "$branch")
fi
if [ -n "$images_json" ]; then
	body=$(printf '%s,"images":{%s}' "$body" "$images_json")
fi
body=$(printf '%s,"finishedAt":"%s"}' "$body" "$finished_at")

ts=$(date +%s)
case $ts in
'' | *[!0-9]*) die "date +%s did not print Unix seconds (got: $ts)" ;;
esac

# Sign exactly "<ts>.<body>": printf '%s' adds no newline. The key is an argument of openssl
# (visible to other processes of this build container, never printed).
sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$key" -r)
sig=${sig%% *}
case $sig in
*[!0-9a-f]*) die "openssl did not produce an HMAC-SHA256 (got: $sig)" ;;
esac
[ "${#sig}" -eq 64 ] || die "openssl did not produce an HMAC-SHA256 (got: $sig)"

# --- Post -----------------------------------------------------------------------------------

reply=$(mktemp "${TMPDIR:-/tmp}/post-manifest.XXXXXX")
trap 'rm -f "$reply"' EXIT
trap 'exit 1' HUP INT TERM

endpoint=$url/v1/manifests
[ -z "$namespace" ] || endpoint=$url/v1/namespaces/$namespace/manifests
printf '%s: posting build %s of %s (%s) to %s\n' "$prog" "$build_number" "$application" "$image" "$endpoint"
printf '%s: manifest: %s\n' "$prog" "$body"

# -q: ignore ~/.curlrc. --retry retries timeouts, 408, 429 and 5xx answers (honouring
# Retry-After); --retry-all-errors adds connection failures (refused, reset, DNS). Without
# --fail an HTTP answer is not a curl error, so 4xx answers are never retried. The signature's
# timestamp must stay within 5 minutes of the receiver's clock: --retry-max-time keeps all
# attempts inside 2 minutes. The body file is truncated before each retry.
set +e
code=$(curl -q --silent --show-error \
	--connect-timeout 10 --max-time 30 \
	--retry 5 --retry-all-errors --retry-max-time 120 \
	--request POST \
	--header 'Content-Type: application/json' \
	--header "X-Autodeploy-Timestamp: $ts" \
	--header "X-Autodeploy-Signature: sha256=$sig" \
	--data-binary "$body" \
	--output "$reply" \
	--write-out '%{http_code}' \
	"$endpoint")
rc=$?
set -e

if [ "$rc" -ne 0 ]; then
	printf '%s: error: could not deliver the manifest to %s (curl exit status %s, last HTTP status %s)\n' \
		"$prog" "$endpoint" "$rc" "${code:-none}" >&2
	exit 1
fi

printf '%s: receiver answered HTTP %s: ' "$prog" "$code"
cat "$reply"
# The receiver ends its JSON with a newline; add one if something else answered without it.
[ -z "$(tail -c 1 "$reply")" ] || echo

case $code in
202)
	printf '%s: build %s recorded\n' "$prog" "$build_number"
	if grep -q '"incomplete"' "$reply"; then
		printf '%s: warning: the Environments listed in incomplete manage a container this build names no image for (set IMAGES), and do not deploy it\n' "$prog" >&2
	fi
	;;
200)
	if grep -q '"duplicate"' "$reply"; then
		printf '%s: build %s was already recorded (duplicate); nothing to do\n' "$prog" "$build_number"
	elif grep -q '"stale"' "$reply"; then
		printf '%s: warning: a newer build than %s is already recorded; this one is ignored\n' "$prog" "$build_number" >&2
	else
		printf '%s: warning: no Environment follows application %s on branch %s; nothing recorded\n' \
			"$prog" "$application" "${branch:-(none)}" >&2
	fi
	;;
2??) ;;
401)
	printf '%s: error: authentication failed: check the key, and that this machine'"'"'s clock is within 5 minutes of the receiver'"'"'s\n' "$prog" >&2
	exit 1
	;;
409)
	printf '%s: error: another build already has number %s; build numbers must be unique per application\n' "$prog" "$build_number" >&2
	exit 1
	;;
*)
	printf '%s: error: the receiver rejected the manifest (HTTP %s)\n' "$prog" "$code" >&2
	exit 1
	;;
esac
