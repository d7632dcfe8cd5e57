"""One chDB session (current ClickHouse, embedded) driven over stdin/stdout, one JSON object a line.

Request:  {"sql": "...", "format": "TSVWithNames"}   (format optional; "" for statements)
Response: {"ok": true, "out": "..."} or {"ok": false, "error": "..."}
The first line written is {"ok": true, "version": "<version()>"}.

Used by connectors/clickhouse/chdb_test.go (the view check against current ClickHouse); the data
lives in a temporary directory given as argv[1] and dies with the process.
"""
import json
import sys

from chdb import session


def main():
    sess = session.Session(sys.argv[1])
    out = sys.stdout

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    reply({"ok": True, "version": sess.query("SELECT version()", "TSV").bytes().decode().strip()})
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            res = sess.query(req["sql"], req.get("format") or "TSV")
            reply({"ok": True, "out": res.bytes().decode() if res is not None else ""})
        except Exception as e:  # the server's message, as ClickHouse words it
            reply({"ok": False, "error": str(e)})
    sess.close()


if __name__ == "__main__":
    main()
