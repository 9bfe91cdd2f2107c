"""The event warehouse's schemas, generated from the event protos (run through scripts/warehouse-schemas).

Inputs (all in the repository, or in the copy named by --root):
  proto/**                                      the contracts; payloads are mirai.events.v1.<Message>
  services/platform/src/events/envelope.rs      which message is which ce-type, on which topic, and
                                                which payload field is the ce-subject
  services/platform/src/events/topology.rs      the topics
  charts/mirai/files/warehouse/bigquery/*.json  the committed table schemas (they only ever grow)

Outputs (charts/mirai/files/warehouse/, embedded by the chart with .Files.Get):
  pubsub/<ce-type>.proto     a self-contained protobuf schema per event type: one top-level message,
                             no imports (Pub/Sub's rules), every referenced type inlined as a nested
                             type; wire-identical to the payload the outbox relay publishes
  bigquery/<table>.json      the BigQuery table a BigQuery subscription with use_topic_schema and
                             write_metadata fills from that schema
  bigquery/landing.json      the landing table of a BigQuery subscription without a topic schema
  events.json                the index: types, tables, topics, subject columns

--check regenerates in memory and fails on any difference from the committed files, and applies the
compatibility rules between each proto message and its committed table (RULES below), so that a
hand-edited table, a retyped field or a schema Pub/Sub would refuse is caught before a deploy.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2

F = descriptor_pb2.FieldDescriptorProto
OUT = Path("charts/mirai/files/warehouse")
EVENTS_PROTO = "mirai/events/v1/events.proto"
PACKAGE = "mirai.events.v1"
# Columns a BigQuery subscription writes with write_metadata (the Pub/Sub docs, "BigQuery
# subscriptions", write metadata): name → allowed BigQuery types. `data` only without a topic schema.
METADATA = {
    "subscription_name": ("STRING",),
    "message_id": ("STRING",),
    "publish_time": ("TIMESTAMP",),
    "attributes": ("JSON", "STRING"),
}
LANDING_DATA = {"data": ("BYTES", "STRING")}
# Proto scalar → the BigQuery type we write, and every type a BigQuery subscription accepts for it.
INTEGERS = ("INTEGER", "NUMERIC", "BIGNUMERIC")
SCALARS = {
    F.TYPE_DOUBLE: ("double", "FLOAT", ("FLOAT",)),
    F.TYPE_FLOAT: ("float", "FLOAT", ("FLOAT",)),
    F.TYPE_INT64: ("int64", "INTEGER", INTEGERS),
    F.TYPE_UINT64: ("uint64", "INTEGER", INTEGERS),
    F.TYPE_INT32: ("int32", "INTEGER", INTEGERS),
    F.TYPE_FIXED64: ("fixed64", "INTEGER", INTEGERS),
    F.TYPE_FIXED32: ("fixed32", "INTEGER", INTEGERS),
    F.TYPE_BOOL: ("bool", "BOOLEAN", ("BOOLEAN",)),
    F.TYPE_STRING: ("string", "STRING", ("STRING", "JSON")),
    F.TYPE_BYTES: ("bytes", "BYTES", ("BYTES",)),
    F.TYPE_UINT32: ("uint32", "INTEGER", INTEGERS),
    F.TYPE_SFIXED32: ("sfixed32", "INTEGER", INTEGERS),
    F.TYPE_SFIXED64: ("sfixed64", "INTEGER", INTEGERS),
    F.TYPE_SINT32: ("sint32", "INTEGER", INTEGERS),
    F.TYPE_SINT64: ("sint64", "INTEGER", INTEGERS),
}
# Enums are written as their number.
ENUM_TYPES = ("INTEGER",)
REMOVED = "REMOVED:"
# BigQuery limits a column description to 1,024 characters.
MAX_DESCRIPTION = 1024
# user.data.purged is published by every deletion participant on its own topic
# (services/platform/src/events/deletion.rs), not on the topic its Event impl names.
ANY_PUBLISHER = {"mirai.user.data.purged.v1"}

RULES = """\
R1 fresh: the committed files equal what the generator writes from the protos
R2 every proto field has a column of the same name and a compatible type (RECORD for messages)
R3 mode: a repeated field is a REPEATED column, any other field a NULLABLE one (proto3 never REQUIRED)
R4 no column without a field, unless it is NULLABLE and its description starts with "REMOVED:"
R5 the write_metadata columns exist with their types; no payload field takes their names
R6 the partitioning column is a top-level TIMESTAMP; the clustering column a top-level STRING
R7 each Pub/Sub schema is self-contained (one top-level message, no imports), compiles, and is
   wire-identical to the message the publisher encodes (names, numbers, types, labels)
R8 envelope.rs and events.proto agree on every event's ce-type; every event message has one
"""


class Problems(list):
    def add(self, rule: str, message: str) -> None:
        self.append(f"[{rule}] {message}")


# === Reading the protos ===========================================================================

def protoc(include: Path, files: list[str], out: Path, extra_includes: bool = True) -> str:
    """Runs grpcio-tools' protoc; returns its error text ('' on success)."""
    import grpc_tools

    args = ["protoc", f"-I{include}", f"--descriptor_set_out={out}", "--include_imports", "--include_source_info"]
    if extra_includes:
        args.append(f"-I{Path(grpc_tools.__file__).parent / '_proto'}")
    # protoc reports to stderr of this process: run it in a child to capture it.
    code = (f"import sys; from grpc_tools import protoc; sys.exit(protoc.main({args + files!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return "" if result.returncode == 0 else (result.stderr.strip() or f"protoc exit {result.returncode}")


@dataclass
class Pool:
    messages: dict[str, descriptor_pb2.DescriptorProto] = field(default_factory=dict)
    enums: dict[str, descriptor_pb2.EnumDescriptorProto] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)  # "<message>.<field>" or "<message>" → comment
    files: dict[str, descriptor_pb2.FileDescriptorProto] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Pool":
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(path.read_bytes())
        pool = cls()
        for f in fds.file:
            pool.files[f.name] = f
            locations = {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}
            prefix = f".{f.package}" if f.package else ""

            def walk(messages, enums, scope, path):
                for i, m in enumerate(messages):
                    name = f"{scope}.{m.name}"
                    pool.messages[name] = m
                    pool.comments[name] = locations.get(tuple(path + [4 if not path else 3, i]), "")
                    mpath = path + [4 if not path else 3, i]
                    for j, fd in enumerate(m.field):
                        pool.comments[f"{name}.{fd.name}"] = locations.get(tuple(mpath + [2, j]), "")
                    walk(m.nested_type, m.enum_type, name, mpath)
                for e in enums:
                    pool.enums[f"{scope}.{e.name}"] = e

            walk(f.message_type, f.enum_type, prefix, [])
            for i, e in enumerate(f.enum_type):
                pool.enums[f"{prefix}.{e.name}"] = e
        return pool


def clean_comment(text: str) -> str:
    return " ".join(text.split())


# === Events of envelope.rs ========================================================================

@dataclass
class Event:
    message: str        # e.g. UserRegistered
    ce_type: str        # e.g. mirai.user.registered.v1
    topics: list[str]   # the publisher's topic(s)
    subject: str        # the payload path of ce-subject, e.g. user_id or bar.symbol ('' if unknown)

    @property
    def table(self) -> str:
        return self.ce_type.removeprefix("mirai.").replace(".", "_").replace("-", "_")


def read_events(envelope: str, topology: str) -> tuple[list[Event], list[str]]:
    consts = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', topology))
    all_block = re.search(r"pub const ALL: &\[&str\] = &\[(.*?)\];", topology, re.S)
    all_topics = [consts[n.strip()] for n in all_block.group(1).split(",") if n.strip()] if all_block else []
    internal = [t for t in all_topics if t != consts.get("PRICE_ALERTS")]
    events = []
    block = re.search(r"events! \{(.*?)\n\}", envelope, re.S)
    for message, ce_type, topic, expr in re.findall(
            r'^\s*(\w+) => "([^"]+)", topics::(\w+), \|e\| (.+?);\s*$', block.group(1) if block else "", re.M):
        events.append(Event(message, ce_type, [consts[topic]], subject_path(expr)))
    for message, body in re.findall(r"impl Event for ev::(\w+) \{(.*?)\n\}", envelope, re.S):
        ce_type = re.search(r'const TYPE: &\'static str = "([^"]+)";', body).group(1)
        topic = re.search(r"const TOPIC: &'static str = topics::(\w+);", body).group(1)
        subject = re.search(r"self\.(\w+)", body)
        topics = internal if ce_type in ANY_PUBLISHER else [consts[topic]]
        events.append(Event(message, ce_type, topics, subject.group(1) if subject else ""))
    return sorted(events, key=lambda e: e.ce_type), internal


def subject_path(expr: str) -> str:
    expr = expr.strip()
    if m := re.fullmatch(r"e\.(\w+)", expr):
        return m.group(1)
    if m := re.match(r"e\.(\w+)\.as_ref\(\)\.map\(\|(\w)\| \2\.(\w+)", expr):
        return f"{m.group(1)}.{m.group(3)}"
    return ""


# === The self-contained Pub/Sub schema ============================================================

LABEL = {F.LABEL_REPEATED: "repeated "}


def dependencies(pool: Pool, root: str) -> tuple[list[str], list[str]]:
    """Every message and enum the root message reaches (excluding the root), sorted by full name."""
    messages, enums, todo = set(), set(), [root]
    while todo:
        m = pool.messages[todo.pop()]
        for fd in m.field:
            if fd.type == F.TYPE_MESSAGE and fd.type_name not in messages and fd.type_name != root:
                messages.add(fd.type_name)
                todo.append(fd.type_name)
            elif fd.type == F.TYPE_ENUM:
                enums.add(fd.type_name)
    return sorted(messages), sorted(enums)


def local_names(full_names: list[str]) -> dict[str, str]:
    """Full name → a unique nested name: the short name, or package parts + nesting on a clash."""
    short = {}
    for n in full_names:
        short.setdefault(n.rsplit(".", 1)[-1], []).append(n)
    out = {}
    for name, owners in short.items():
        for n in owners:
            if len(owners) == 1:
                out[n] = name
            else:
                out[n] = "".join(p[:1].upper() + p[1:] for p in n.lstrip(".").split("."))
    return out


def render_fields(pool: Pool, message: descriptor_pb2.DescriptorProto, names: dict[str, str], indent: str) -> list[str]:
    lines, done_oneofs = [], set()
    real_oneofs = {i for i, fd in enumerate(message.field) if fd.HasField("oneof_index") and not fd.proto3_optional}

    def field_line(fd) -> str:
        if fd.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
            type_name = names[fd.type_name]
        elif fd.type in SCALARS:
            type_name = SCALARS[fd.type][0]
        else:
            raise ValueError(f"unsupported field type {fd.type} ({fd.name})")
        label = "optional " if fd.proto3_optional else LABEL.get(fd.label, "")
        return f"{label}{type_name} {fd.name} = {fd.number};"

    for i, fd in enumerate(message.field):
        if i in real_oneofs:
            index = fd.oneof_index
            if index in done_oneofs:
                continue
            done_oneofs.add(index)
            lines.append(f"{indent}oneof {message.oneof_decl[index].name} {{")
            for member in message.field:
                if member.HasField("oneof_index") and member.oneof_index == index and not member.proto3_optional:
                    lines.append(f"{indent}  {field_line(member)}")
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{indent}{field_line(fd)}")
    return lines


def pubsub_schema(pool: Pool, event: Event) -> str:
    root = f".{PACKAGE}.{event.message}"
    messages, enums = dependencies(pool, root)
    names = local_names(messages + enums)
    names[root] = event.message
    lines = [
        f"// GENERATED by scripts/warehouse-schemas from proto/{EVENTS_PROTO} ({PACKAGE}.{event.message}).",
        "// Do not edit. The Pub/Sub schema of the event type " + event.ce_type + ": one self-contained",
        "// message (every referenced type nested, no imports), wire-identical to the published payload.",
        'syntax = "proto3";',
        "",
        f"message {event.message} {{",
    ]
    lines += render_fields(pool, pool.messages[root], names, "  ")
    for full in messages:
        lines += ["", f"  message {names[full]} {{"]
        lines += render_fields(pool, pool.messages[full], names, "    ")
        lines.append("  }")
    for full in enums:
        lines += ["", f"  enum {names[full]} {{"]
        lines += [f"    {v.name} = {v.number};" for v in pool.enums[full].value]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def wire_shape(pool: Pool, full: str, seen: tuple = ()) -> list:
    """What decoding depends on, with names (BigQuery columns are named after fields)."""
    if full in seen:
        return ["<recursive>"]
    out = []
    for fd in sorted(pool.messages[full].field, key=lambda f: f.number):
        entry = [fd.number, fd.name, fd.type, fd.label, fd.proto3_optional]
        if fd.type == F.TYPE_MESSAGE:
            entry.append(wire_shape(pool, fd.type_name, seen + (full,)))
        elif fd.type == F.TYPE_ENUM:
            entry.append(sorted((v.number, v.name) for v in pool.enums[fd.type_name].value))
        out.append(entry)
    return out


# === The BigQuery table ===========================================================================

def column(name: str, type_: str, mode: str, description: str = "", fields: list | None = None) -> dict:
    out = {"name": name, "type": type_, "mode": mode}
    if description:
        out["description"] = description[:MAX_DESCRIPTION]
    if fields is not None:
        out["fields"] = fields
    return out


def payload_columns(pool: Pool, full: str, seen: tuple = ()) -> list[dict]:
    if full in seen:
        raise ValueError(f"{full} is recursive: BigQuery has no recursive RECORD")
    columns = []
    for fd in pool.messages[full].field:
        mode = "REPEATED" if fd.label == F.LABEL_REPEATED else "NULLABLE"
        description = clean_comment(pool.comments.get(f"{full}.{fd.name}", ""))
        if fd.type == F.TYPE_MESSAGE:
            nested = payload_columns(pool, fd.type_name, seen + (full,))
            if not nested:
                raise ValueError(f"{full}.{fd.name}: {fd.type_name} has no fields (BigQuery has no empty RECORD)")
            columns.append(column(fd.name, "RECORD", mode, description, nested))
        elif fd.type == F.TYPE_ENUM:
            values = ", ".join(f"{v.number}={v.name}" for v in pool.enums[fd.type_name].value)
            note = f"Enum {fd.type_name.lstrip('.')}: {values}."
            columns.append(column(fd.name, ENUM_TYPES[0], mode, f"{description} {note}".strip()))
        else:
            columns.append(column(fd.name, SCALARS[fd.type][1], mode, description))
    return columns


def metadata_columns(landing: bool) -> list[dict]:
    cols = [
        column("subscription_name", "STRING", "NULLABLE", "Pub/Sub: the BigQuery subscription that wrote the row."),
        column("message_id", "STRING", "NULLABLE", "Pub/Sub: the message id (not the event id: dedupe on ce-id)."),
        column("publish_time", "TIMESTAMP", "NULLABLE",
               "Pub/Sub: when the outbox relay published the event; the partitioning column."),
        column("attributes", "JSON", "NULLABLE",
               "Pub/Sub attributes: the CloudEvents envelope (ce-id, ce-type, ce-source, ce-time, ce-subject, "
               "content-type), traceparent and mirai-correlation-id."),
    ]
    if landing:
        cols.insert(3, column("data", "BYTES", "NULLABLE", "The payload: binary protobuf of mirai.events.v1.<message> named by ce-type."))
    return cols


def evolve(committed: list[dict] | None, fresh: list[dict], where: str, problems: Problems) -> list[dict]:
    """Committed order and columns first (a column is never dropped or retyped), then new ones."""
    if committed is None:
        return fresh
    by_name = {c["name"]: c for c in fresh}
    out = []
    for old in committed:
        new = by_name.pop(old["name"], None)
        if new is None:
            kept = dict(old)
            if not kept.get("description", "").startswith(REMOVED):
                kept["description"] = (f"{REMOVED} the field left the proto; BigQuery cannot drop a column in place. "
                                       + kept.get("description", ""))[:MAX_DESCRIPTION]
            out.append(kept)
            continue
        if (old["type"], old["mode"]) != (new["type"], new["mode"]):
            problems.add("R2", f"{where}.{old['name']}: the proto now makes it {new['type']} {new['mode']}, the table "
                               f"has {old['type']} {old['mode']}: BigQuery cannot change a column in place; a breaking "
                               "change is a new message under mirai.events.v2")
        if new["type"] == "RECORD" and old["type"] == "RECORD":
            new = dict(new, fields=evolve(old.get("fields", []), new["fields"], f"{where}.{old['name']}", problems))
        out.append(new)
    return out + list(by_name.values())


# === Generation ===================================================================================

@dataclass
class Generated:
    files: dict[str, str]           # path under OUT → content
    events: list[Event]
    pool: Pool


def generate(root: Path, problems: Problems, work: Path) -> Generated:
    envelope = (root / "services/platform/src/events/envelope.rs").read_text()
    topology = (root / "services/platform/src/events/topology.rs").read_text()
    events, internal = read_events(envelope, topology)
    if not events:
        problems.add("R8", "read no events from envelope.rs (did its events! table change shape?)")
    descriptor = work / "events.pb"
    error = protoc(root / "proto", [EVENTS_PROTO], descriptor)
    if error:
        raise SystemExit(f"warehouse-schemas: protoc failed on proto/{EVENTS_PROTO}:\n{error}")
    pool = Pool.load(descriptor)

    # R8: the ce-type comment above each message in events.proto and envelope.rs agree.
    documented = {}
    for full, comment in pool.comments.items():
        if full.count(".") == 4 and full.startswith(f".{PACKAGE}.") and (m := re.search(r"ce-type: (\S+)", comment)):
            documented[full.rsplit(".", 1)[-1]] = m.group(1)
    coded = {e.message: e.ce_type for e in events}
    for message in sorted(set(documented) | set(coded)):
        if message not in coded:
            problems.add("R8", f"events.proto documents {message} as {documented[message]}, envelope.rs has no Event impl for it")
        elif message not in documented:
            problems.add("R8", f"envelope.rs publishes {message} as {coded[message]}, events.proto gives it no ce-type comment")
        elif documented[message] != coded[message]:
            problems.add("R8", f"{message}: events.proto says ce-type {documented[message]}, envelope.rs {coded[message]}")

    files: dict[str, str] = {}
    index_events = []
    for event in events:
        full = f".{PACKAGE}.{event.message}"
        if full not in pool.messages:
            problems.add("R8", f"envelope.rs names {event.message}, which is no message of {PACKAGE}")
            continue
        files[f"pubsub/{event.ce_type}.proto"] = pubsub_schema(pool, event)
        committed = read_json(root / OUT / "bigquery" / f"{event.table}.json")
        fresh = metadata_columns(landing=False) + payload_columns(pool, full)
        for col in payload_columns(pool, full):
            if col["name"] in METADATA:
                problems.add("R5", f"{event.message}.{col['name']}: a payload field may not take the name of a metadata column")
        table = evolve(committed, fresh, event.table, problems)
        files[f"bigquery/{event.table}.json"] = dump(table)
        subject_column = event.subject if event.subject and "." not in event.subject else ""
        index_events.append({
            "type": event.ce_type,
            "message": f"{PACKAGE}.{event.message}",
            "topics": event.topics,
            "subject": event.subject,
            "table": event.table,
            "clustering": [subject_column] if subject_column else [],
            "schema": f"pubsub/{event.ce_type}.proto",
            "tableSchema": f"bigquery/{event.table}.json",
        })
    files["bigquery/landing.json"] = dump(metadata_columns(landing=True))
    landing = [{"topic": t, "table": "raw_" + t.replace("-", "_"),
                "types": sorted(e.ce_type for e in events if t in e.topics)} for t in internal]
    index = {
        "generatedBy": "scripts/warehouse-schemas (do not edit)",
        "partitioning": {"field": "publish_time", "type": "DAY"},
        "landing": landing,
        "events": index_events,
    }
    files["events.json"] = dump(index)
    return Generated(files, events, pool)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def dump(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


# === Compatibility rules on the committed files ===================================================

def check_table(pool: Pool, full: str, columns: list[dict], where: str, problems: Problems, top: bool) -> None:
    message = pool.messages[full]
    fields = {fd.name: fd for fd in message.field}
    names = [c.get("name") for c in columns]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.add("R2", f"{where}: column {dup} appears twice")
    by_name = {c.get("name"): c for c in columns}
    for fd in message.field:
        col = by_name.get(fd.name)
        path = f"{where}.{fd.name}"
        if col is None:
            problems.add("R2", f"{path}: proto field {fd.number} has no column (a BigQuery subscription without "
                               "drop_unknown_fields leaves such messages unwritten)")
            continue
        if fd.type == F.TYPE_MESSAGE:
            allowed = ("RECORD",)
        elif fd.type == F.TYPE_ENUM:
            allowed = ENUM_TYPES
        else:
            allowed = SCALARS[fd.type][2]
        if col.get("type") not in allowed:
            problems.add("R2", f"{path}: column type {col.get('type')} is not compatible with proto "
                               f"{SCALARS.get(fd.type, ('message' if fd.type == F.TYPE_MESSAGE else 'enum',))[0]} "
                               f"(allowed: {', '.join(allowed)})")
        want_mode = "REPEATED" if fd.label == F.LABEL_REPEATED else "NULLABLE"
        if col.get("mode", "NULLABLE") != want_mode:
            problems.add("R3", f"{path}: mode {col.get('mode', 'NULLABLE')}, expected {want_mode} for a "
                               f"{'repeated' if want_mode == 'REPEATED' else 'singular proto3'} field")
        if fd.type == F.TYPE_MESSAGE and col.get("type") == "RECORD":
            check_table(pool, fd.type_name, col.get("fields", []), path, problems, top=False)
    for col in columns:
        name = col.get("name")
        if name in fields or (top and name in METADATA):
            continue
        path = f"{where}.{name}"
        if not col.get("description", "").startswith(REMOVED):
            problems.add("R4", f"{path}: no proto field of that name and no \"{REMOVED}\" note in its description")
        elif col.get("mode", "NULLABLE") != "NULLABLE":
            problems.add("R4", f"{path}: a column of a removed field must be NULLABLE (nothing writes it), not {col.get('mode')}")


def check_metadata(columns: list[dict], where: str, problems: Problems, landing: bool) -> None:
    by_name = {c.get("name"): c for c in columns}
    for name, types in {**METADATA, **(LANDING_DATA if landing else {})}.items():
        col = by_name.get(name)
        if col is None:
            problems.add("R5", f"{where}: no {name} column (write_metadata writes it; the subscription would be refused)")
        elif col.get("type") not in types or col.get("mode", "NULLABLE") == "REPEATED":
            problems.add("R5", f"{where}.{name}: {col.get('type')} {col.get('mode', 'NULLABLE')}, expected {' or '.join(types)}")
    if landing:
        for name in sorted(set(by_name) - set(METADATA) - set(LANDING_DATA)):
            if by_name[name].get("mode", "NULLABLE") == "REQUIRED":
                problems.add("R5", f"{where}.{name}: a REQUIRED column no subscription writes")


def check_required(columns: list[dict], where: str, problems: Problems) -> None:
    for col in columns:
        if col.get("mode") == "REQUIRED":
            problems.add("R3", f"{where}.{col.get('name')}: REQUIRED, but a proto3 field may be absent from a message")
        check_required(col.get("fields", []), f"{where}.{col.get('name')}", problems)


def check_layout(index: dict, tables: dict[str, list[dict]], problems: Problems) -> None:
    part = index.get("partitioning", {}).get("field")
    for table, columns in tables.items():
        by_name = {c.get("name"): c for c in columns}
        if part not in by_name or by_name[part].get("type") != "TIMESTAMP" or by_name[part].get("mode") == "REPEATED":
            problems.add("R6", f"{table}: the partitioning column {part} is not a top-level TIMESTAMP column")
    for e in index.get("events", []):
        by_name = {c.get("name"): c for c in tables.get(e["table"], [])}
        for col in e.get("clustering", []):
            c = by_name.get(col)
            if c is None or c.get("type") not in ("STRING", "INTEGER", "BOOLEAN", "TIMESTAMP", "DATE", "NUMERIC") \
                    or c.get("mode") == "REPEATED":
                problems.add("R6", f"{e['table']}: clustering column {col} is not a top-level scalar column")


def check_pubsub_schemas(schemas: dict[str, tuple[str, str]], pool: Pool, work: Path, problems: Problems) -> None:
    """schemas: file name → (text, full name of the published message). One protoc run for all
    (a failing one is compiled again alone, to name it)."""
    d = work / "schemas"
    d.mkdir()
    names = {}
    for name, (text, _) in schemas.items():
        if re.search(r"^\s*import\s", text, re.M):
            problems.add("R7", f"{name}: imports another file (a Pub/Sub schema must be self-contained)")
            continue
        top = re.findall(r"^(message|enum)\s+(\w+)", text, re.M)
        if len(top) != 1 or top[0][0] != "message":
            problems.add("R7", f"{name}: {len(top)} top-level definitions ({', '.join(n for _, n in top)}); "
                               "Pub/Sub takes exactly one message")
            continue
        names[name] = top[0][1]
        (d / f"{len(names)}.proto").write_text(text)
    files = [f"{i + 1}.proto" for i in range(len(names))]
    if not files:
        return
    if protoc(d, files, d / "all.pb", extra_includes=False):
        for i, name in enumerate(names):
            error = protoc(d, [files[i]], d / f"{i + 1}.pb", extra_includes=False)
            if error:
                problems.add("R7", f"{name}: does not compile on its own: {' '.join(error.split())[:300]}")
        return
    alone = Pool.load(d / "all.pb")
    for name, message in names.items():
        full = schemas[name][1]
        mine, theirs = wire_shape(alone, f".{message}"), wire_shape(pool, full)
        if mine != theirs:
            diff = next((f"field {a[:2]} vs {b[:2]}" for a, b in zip(mine, theirs) if a != b),
                        f"{len(mine)} fields vs {len(theirs)}")
            problems.add("R7", f"{name}: not wire-identical to {full.lstrip('.')} ({diff}): Pub/Sub would decode "
                               "the published payload differently")


def check(root: Path, gen: Generated, problems: Problems, work: Path) -> None:
    out = root / OUT
    # R1: freshness.
    committed_paths = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} if out.is_dir() else set()
    for path in sorted(set(gen.files) | committed_paths):
        have = (out / path).read_text() if path in committed_paths else None
        if have is None:
            problems.add("R1", f"{OUT / path} is missing: run scripts/warehouse-schemas")
        elif path not in gen.files:
            problems.add("R1", f"{OUT / path} is generated by nothing: remove it (scripts/warehouse-schemas)")
        elif have != gen.files[path]:
            problems.add("R1", f"{OUT / path} is stale (differs from the protos): run scripts/warehouse-schemas")
    # R2-R7 on the committed files (what the chart embeds).
    index = read_json(out / "events.json") or {}
    tables, schemas = {}, {}
    for e in index.get("events", []):
        columns = read_json(out / e["tableSchema"]) or []
        tables[e["table"]] = columns
        full = "." + e["message"]
        if full not in gen.pool.messages:
            problems.add("R2", f"{e['table']}: events.json names {e['message']}, which the protos no longer define")
            continue
        check_metadata(columns, e["table"], problems, landing=False)
        check_table(gen.pool, full, [c for c in columns if c.get("name") not in METADATA], e["table"], problems, top=True)
        check_required(columns, e["table"], problems)
        schema = (out / e["schema"]).read_text() if (out / e["schema"]).is_file() else ""
        schemas[e["schema"]] = (schema, full)
    check_pubsub_schemas(schemas, gen.pool, work, problems)
    landing = read_json(out / "bigquery/landing.json") or []
    check_metadata(landing, "landing", problems, landing=True)
    check_required(landing, "landing", problems)
    tables["landing"] = landing
    check_layout(index, tables, problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, help="the repository (scripts/warehouse-schemas passes it)")
    parser.add_argument("--root", help="read and check this copy of the repository instead (fixtures)")
    parser.add_argument("--check", action="store_true", help="check, write nothing")
    parser.add_argument("--rules", action="store_true", help="print the compatibility rules")
    args = parser.parse_args()
    if args.rules:
        print(RULES, end="")
        return 0
    root = Path(args.root or args.repo).resolve()
    problems = Problems()
    with tempfile.TemporaryDirectory(prefix="warehouse-schemas-") as tmp:
        work = Path(tmp)
        gen = generate(root, problems, work)
        if args.check:
            check(root, gen, problems, work)
        elif not problems:
            out = root / OUT
            for sub in ("pubsub", "bigquery"):
                shutil.rmtree(out / sub, ignore_errors=True)
            for path, text in sorted(gen.files.items()):
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                (out / path).write_text(text)
            print(f"warehouse-schemas: wrote {len(gen.files)} files for {len(gen.events)} event types into {OUT}")
    if problems:
        print(f"warehouse-schemas: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    if args.check:
        print(f"warehouse-schemas: {len(gen.events)} event types: files fresh, rules R1-R8 hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
