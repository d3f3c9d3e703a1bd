#!/bin/sh
# A shell handler for `codeqd-worker` (or `codeqd worker`), e.g.
#   CODEQD_TOKEN=$(codeqd token --role worker --events shout) \
#       codeqd-worker --events shout --concurrency 4 --timeout 30 -- examples/handler.sh
#
# In:  the payload JSON on stdin; the task in CODEQ_TASK_ID, CODEQ_COMMAND,
#      CODEQ_ATTEMPT, CODEQ_MAX_ATTEMPTS, CODEQ_TASK_JSON (the task without its payload).
# Out: exit 0 and a JSON object on stdout completes the task with it as the result;
#      any other exit retries the task, with the end of stderr as the reason.
set -eu

echo "shout: task $CODEQ_TASK_ID, attempt $CODEQ_ATTEMPT" >&2

# No jq needed: python3 reads the payload from stdin and writes the result.
exec python3 -c '
import json, sys
name = json.load(sys.stdin).get("name")
if not isinstance(name, str) or not name:
    sys.exit("payload needs a name")  # exit 1, message on stderr: the nack reason
print(json.dumps({"shout": name.upper() + "!"}))
'
