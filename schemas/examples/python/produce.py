#!/usr/bin/env python3
"""Produce retailflow events from Python, as an upstream team would: confluent-kafka (librdkafka)
and fastavro, nothing from retailflow but its .avsc files.

Reads events in retailflow's JSON form (one per line, what `retailflow produce` reads and
`retailflow generate --out` writes), encodes each with fastavro against the topic's schema, frames
it in the Confluent wire format with the offline schema id (SHA-256 of the schema's Parsing
Canonical Form, first four bytes, top bit clear) unless --schema-id is given, keys it by
order_id, and produces it.

The partitioner is librdkafka's default (consistent_random: CRC32 of the key) unless
--partitioner says otherwise: retailflow expects murmur2 (Java's default); pass
--partitioner murmur2_random to match it. retailflow re-routes records that arrive on another
partition, so either works, but murmur2 saves the detour.

Prints one JSON line: {"produced": N, "schema_id": ID, "partitions": {"0": n, ...}}.
"""
import argparse
import base64
import datetime as dt
import decimal
import hashlib
import io
import json
import re
import struct
import sys

import fastavro
from confluent_kafka import Producer

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def offline_schema_id(schema: dict) -> int:
    pcf = fastavro.schema.to_parsing_canonical_form(schema)
    return int.from_bytes(hashlib.sha256(pcf.encode()).digest()[:4], "big") & 0x7FFFFFFF


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def micros(text: str) -> int:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def record_key(event: dict) -> str:
    """The record key: the body's order_id, or checkout:<checkout id> for a loyalty event before
    the order exists (the envelope's correlation_id carries the checkout id until then)."""
    body = next((v for v in event.values() if isinstance(v, dict) and ("order_id" in v or "reservation_id" in v)), {})
    if body.get("order_id"):
        return body["order_id"]
    if body.get("checkout_id"):
        return "checkout:" + body["checkout_id"]
    if "reservation_id" in body and event.get("correlation_id"):
        return "checkout:" + event["correlation_id"]
    return ""


class Converter:
    """Turns a JSON-form value into the datum fastavro writes, guided by the Avro schema."""

    def __init__(self, schema: dict):
        self.named = {}
        self._index(schema, "")

    def _index(self, s, ns):
        if isinstance(s, list):
            for b in s:
                self._index(b, ns)
        elif isinstance(s, dict):
            t = s.get("type")
            if t in ("record", "enum", "fixed"):
                full = s["name"] if "." in s["name"] else ".".join(x for x in (s.get("namespace", ns), s["name"]) if x)
                self.named[full] = s
                self.named[s["name"]] = s
                inner = full.rsplit(".", 1)[0] if "." in full else ""
                for f in s.get("fields", []):
                    self._index(f["type"], inner)
                s["_full"] = full
            elif t == "array":
                self._index(s["items"], ns)
            elif t == "map":
                self._index(s["values"], ns)
            elif isinstance(t, (dict, list)):
                self._index(t, ns)

    def convert(self, s, v, path="$"):
        if isinstance(s, str):
            if s in self.named:
                return self.convert(self.named[s], v, path)
            if s == "bytes":
                return base64.b64decode(v)
            return v
        if isinstance(s, list):  # a union
            if v is None:
                return None
            branches = [b for b in s if b != "null"]
            if len(branches) == 1:
                return self.convert(branches[0], v, path)
            raise ValueError(f"{path}: a union of several records needs its branch chosen by the caller")
        t = s.get("type")
        if isinstance(t, (dict, list)):
            return self.convert(t, v, path)
        lt = s.get("logicalType")
        if lt == "decimal":
            q = decimal.Decimal(1).scaleb(-s.get("scale", 0))
            return decimal.Decimal(v).quantize(q)
        if lt in ("timestamp-micros",):
            return micros(v)
        if lt in ("timestamp-millis",):
            return micros(v) // 1000
        if t == "record":
            out = {}
            for f in s["fields"]:
                out[f["name"]] = self.convert(f["type"], v.get(f["name"], f.get("default")), f"{path}.{f['name']}")
            return out
        if t == "array":
            return [self.convert(s["items"], x, f"{path}[{i}]") for i, x in enumerate(v or [])]
        if t == "map":
            return {k: self.convert(s["values"], x, f"{path}.{k}") for k, x in (v or {}).items()}
        if t == "bytes":
            return base64.b64decode(v)
        return v

    def envelope(self, schema: dict, event: dict) -> dict:
        """The topic value: the envelope fields, and the one body as the payload union branch."""
        out = {}
        for f in schema["fields"]:
            if f["name"] != "payload":
                out[f["name"]] = self.convert(f["type"], event.get(f["name"], f.get("default")), f["name"])
                continue
            for branch in f["type"]:
                rec = self.named[branch] if isinstance(branch, str) else branch
                key = snake(rec["name"])
                if key in event:
                    out["payload"] = (rec["_full"], self.convert(rec, event[key], "$." + key))
                    break
            else:
                raise ValueError(f"event {event.get('event_id')}: no body this topic's schema knows")
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--schema", required=True, help="the topic's .avsc (retailflow schemas --out DIR writes them)")
    ap.add_argument("--file", required=True, help="events in retailflow's JSON form, one per line")
    ap.add_argument("--schema-id", type=int, help="the registry's id (default: the offline id)")
    ap.add_argument("--partitioner", default=None, help="librdkafka partitioner (default: librdkafka's own, consistent_random)")
    args = ap.parse_args()

    with open(args.schema) as f:
        raw = json.load(f)
    parsed = fastavro.parse_schema(json.loads(json.dumps(raw)))
    conv = Converter(raw)
    schema_id = args.schema_id or offline_schema_id(raw)

    conf = {"bootstrap.servers": args.brokers, "enable.idempotence": True, "linger.ms": 5}
    if args.partitioner:
        conf["partitioner"] = args.partitioner
    producer = Producer(conf)
    errors, partitions = [], {}

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            partitions[str(msg.partition())] = partitions.get(str(msg.partition()), 0) + 1

    n = 0
    with open(args.file) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            event = json.loads(line)
            datum = conv.envelope(raw, event)
            key = record_key(event)
            buf = io.BytesIO()
            buf.write(b"\x00" + struct.pack(">I", schema_id))
            fastavro.schemaless_writer(buf, parsed, datum)
            producer.produce(args.topic, key=key.encode() if key else None, value=buf.getvalue(), on_delivery=delivered)
            producer.poll(0)
            n += 1
    producer.flush(60)
    if errors:
        print(f"produce.py: {len(errors)} records failed: {errors[:3]}", file=sys.stderr)
        return 1
    print(json.dumps({"produced": n, "schema_id": schema_id, "partitions": partitions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
