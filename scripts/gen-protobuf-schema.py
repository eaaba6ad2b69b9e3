#!/usr/bin/env python3
"""Writes src/apiserver/protobuf/schema.txt: the Kubernetes protobuf schema (message names,
field numbers, wire types, JSON names, repeated, maps) that nanokube's request decoder reads.

Source: the FileDescriptorProtos compiled from the upstream k8s.io/api and k8s.io/apimachinery
generated.proto files. Go's protobuf registry keeps each one gzipped inside every kubectl binary,
so the schema is exactly what that kubectl encodes with. Usage:

    python3 scripts/gen-protobuf-schema.py [/usr/lib/google-cloud-sdk/bin/kubectl.1.33] \
        > src/apiserver/protobuf/schema.txt

Output, one message per block:
    message <full.name>
    <number> <jsonName> <type>                 singular field
    <number> <jsonName> repeated <type>        repeated field
    <number> <jsonName> map <key> <value>      map field (its entry message is not listed)
where <type> is a protobuf scalar name (string, bytes, bool, int32, int64, ...) or a full message
name, and `inline` before the type marks an embedded Go struct whose fields JSON lifts into the
parent object (`json:",inline"`). Only stable API versions (no alpha/beta) and the apimachinery types they use are kept.
"""
import re
import sys
import zlib

SCALARS = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64",
           7: "fixed32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32", 14: "enum",
           15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64"}


# Go embeds these structs with `json:",inline"`: their fields sit in the parent's JSON object.
# The descriptors cannot say so; this list was found by comparing every message's fields with the
# JSON field names of the k8s-openapi crate's types (a field JSON never names is inlined).
INLINE = {
    ("k8s.io.api.core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("k8s.io.api.core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("k8s.io.api.core.v1.ConfigMapProjection", "localObjectReference"),
    ("k8s.io.api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
    ("k8s.io.api.core.v1.SecretKeySelector", "localObjectReference"),
    ("k8s.io.api.core.v1.SecretProjection", "localObjectReference"),
    ("k8s.io.api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    ("k8s.io.api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("k8s.io.api.core.v1.Probe", "handler"),
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    ("k8s.io.api.networking.v1.IngressRule", "ingressRuleValue"),
    ("k8s.io.api.admissionregistration.v1.NamedRuleWithOperations", "ruleWithOperations"),
    ("k8s.io.api.admissionregistration.v1.RuleWithOperations", "rule"),
}

# Where the protobuf field name is not the Go JSON tag (same comparison as above).
RENAMES = {
    ("k8s.io.api.admissionregistration.v1.MutatingWebhookConfiguration", "Webhooks"): "webhooks",
    ("k8s.io.api.admissionregistration.v1.ValidatingWebhookConfiguration", "Webhooks"): "webhooks",
    ("k8s.io.api.admissionregistration.v1.Variable", "Name"): "name",
    ("k8s.io.api.admissionregistration.v1.Variable", "Expression"): "expression",
    ("k8s.io.api.authentication.v1.BoundObjectReference", "uID"): "uid",
    ("k8s.io.api.networking.v1.IngressClassParametersReference", "aPIGroup"): "apiGroup",
}


def varint(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return n, i


def fields(b):
    """Yields (number, value) of a message: ints for varints, bytes for length-delimited."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, v


def descriptors(binary):
    """The gzipped FileDescriptorProtos of k8s.io generated.proto files inside a Go binary."""
    data = open(binary, "rb").read()
    for m in re.finditer(b"\x1f\x8b\x08\x00", data):
        try:
            out = zlib.decompressobj(31).decompress(data[m.start():m.start() + 4_000_000])
        except zlib.error:
            continue
        if out[:1] == b"\x0a" and out[2:2 + out[1]].startswith(b"k8s.io/") \
                and out[2:2 + out[1]].endswith(b"/generated.proto"):
            yield out


def messages(prefix, raw, out):
    """Collects (full name, fields, is_map_entry) of a DescriptorProto and its nested types."""
    name, flds, nested, map_entry = "", [], [], False
    for num, v in fields(raw):
        if num == 1:
            name = v.decode()
        elif num == 2:
            flds.append(dict(fields(v)))
        elif num == 3:
            nested.append(v)
        elif num == 7:
            map_entry = dict(fields(v)).get(7, 0) == 1
    full = f"{prefix}.{name}"
    out[full] = (flds, map_entry)
    for n in nested:
        messages(full, n, out)


def stable(path):
    return not re.search(r"/v\d+(alpha|beta)\d*/", path)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"
    all_msgs = {}
    files = []
    for fd in descriptors(binary):
        f = {1: [], 2: b"", 4: []}
        for num, v in fields(fd):
            if num in (1, 2):
                f[num] = v
            elif num == 4:
                f[4].append(v)
        path, pkg = f[1].decode(), f[2].decode()
        if not stable(path) or path in (x[0] for x in files):
            continue
        files.append((path, pkg))
        for m in f[4]:
            messages(pkg, m, all_msgs)
    print(f"# Generated by scripts/gen-protobuf-schema.py from {binary.rsplit('/', 1)[-1]}; do not edit.")
    print("# Files: " + " ".join(sorted(p for p, _ in files)))
    for full in sorted(all_msgs):
        flds, map_entry = all_msgs[full]
        if map_entry:
            continue
        print(f"message {full}")
        for fl in sorted(flds, key=lambda x: x[3]):
            num, name = fl[3], fl.get(10, fl[1]).decode()
            name = RENAMES.get((full, name), name)
            label, typ = fl.get(4, 1), fl[5]
            tname = fl.get(6, b"").decode().lstrip(".")
            if typ in (11, 14) and tname in all_msgs and all_msgs[tname][1]:
                kf, vf = sorted(all_msgs[tname][0], key=lambda x: x[3])
                def ty(x):
                    return x.get(6, b"").decode().lstrip(".") if x[5] == 11 else SCALARS[x[5]]
                print(f"{num} {name} map {ty(kf)} {ty(vf)}")
                continue
            t = tname if typ == 11 else SCALARS[typ]
            inline = "inline " if (full, name) in INLINE else ""
            print(f"{num} {name} {'repeated ' if label == 3 else ''}{inline}{t}")


main()
