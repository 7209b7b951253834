#!/bin/sh
# Deploys a sample hosted agent with curl and asks it twice in one session.
#
#   AGENTHOST_KEY=ahk_… sh docs/samples/deploy.sh my-agent docs/samples/hosted-python
#
# It reads agent.zip and definition.json from the sample's directory. AGENTHOST_ENDPOINT
# defaults to https://localhost:8443/api/projects/default, AGENTHOST_CA to ./data/tls/ca.pem.
set -eu
name=$1
dir=$2
endpoint=${AGENTHOST_ENDPOINT:-https://localhost:8443/api/projects/default}
api() { curl -sS --fail-with-body --cacert "${AGENTHOST_CA:-./data/tls/ca.pem}" \
  -H "Authorization: Bearer $AGENTHOST_KEY" "$@"; }

# A new version from code: the definition and the zip as multipart parts, the zip's SHA-256
# in a header.
sha=$(sha256sum "$dir/agent.zip" | cut -d' ' -f1)
printf '{"definition":%s}' "$(cat "$dir/definition.json")" > "$dir/metadata.json"
version=$(api -X POST "$endpoint/agents/$name/versions?api-version=v1" \
  -H "x-ms-code-zip-sha256: $sha" \
  -F "metadata=<$dir/metadata.json;type=application/json" \
  -F "code=@$dir/agent.zip;type=application/zip" | sed 's/.*"version":"\([0-9]*\)".*/\1/')
rm "$dir/metadata.json"

# It builds in the background: wait until it is no longer `creating`.
while api "$endpoint/agents/$name/versions/$version?api-version=v1" | grep -q '"status":"creating"'; do
  sleep 0.5
done
api "$endpoint/agents/$name/versions/$version?api-version=v1" | grep -q '"status":"active"'
echo "version $version is active"

# Ask it; the answer's x-agent-session-id header names the session it started.
responses="$endpoint/agents/$name/endpoint/protocols/openai/responses?api-version=v1"
session=$(api -D - -o "$dir/answer.json" -H "content-type: application/json" \
  -d '{"input":"Hello"}' "$responses" | tr -d '\r' | sed -n 's/^x-agent-session-id: //ip')
cat "$dir/answer.json"
echo
api -H "content-type: application/json" \
  -d "{\"input\":\"Again\",\"agent_session_id\":\"$session\"}" "$responses"
echo
rm "$dir/answer.json"
