#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/<target>/ (any folder; needs torch and Pillow, e.g. .venv/bin/python
fuzz/make_seeds.py), cutting the large fixtures down. The other seeds are copies: configs/*.json (model_config),
configs/train/*.json (train_config), and the JSON files of a tiny `m2sa synth --out DIR --images 2 --val-images 1
--test-images 1 --min-size 64 --max-size 64 --max-objects 1` (mmr_json, coco_json, vqa_json, coco_rle/synth_*)."""
import io
import json
import os
import pickle
import struct
import sys
import zlib
from collections import OrderedDict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "reference")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)] -> safetensors bytes."""
    header, blob = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def seeds_safetensors():
    f32 = struct.pack("<6f", *range(6))
    put("safetensors", "f32.safetensors", safetensors([("a.weight", "F32", [2, 3], f32)], {"format": "pt"}))
    put("safetensors", "dtypes.safetensors", safetensors([
        ("h", "F16", [2], b"\x00\x3c\x00\x40"), ("b", "BF16", [1, 2], b"\x80\x3f\x00\x40"),
        ("i", "I64", [1], struct.pack("<q", -3)), ("m", "BOOL", [3], b"\x01\x00\x01"),
        ("u", "U8", [2, 2], b"\x01\x02\x03\x04"), ("e", "F32", [0, 4], b""), ("s", "F64", [], struct.pack("<d", 1.5)),
        ("i32", "I32", [1], struct.pack("<i", 7)), ("i8", "I8", [1], b"\xff"), ("i16", "I16", [1], b"\x01\x00")]))
    # The header of a real fixture (tensors' data cut off: the reader must refuse it by the offsets).
    with open(os.path.join(FIXTURES, "clip_tiny.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(0)
        put("safetensors", "clip_tiny_header_only.safetensors", f.read(8 + n))


def seeds_hf_index():
    shard = "model-00001-of-00001.safetensors"
    put("hf_index", "two.json", json.dumps({"metadata": {"total_size": 40},
                                            "weight_map": {"a.weight": shard, "b.bias": shard}}, indent=2))
    put("hf_index", "one.json", json.dumps({"weight_map": {"b.bias": shard}}))
    put("hf_index", "missing_shard.json", json.dumps({"weight_map": {"a.weight": "model-00002-of-00002.safetensors"}}))


def seeds_torch():
    import torch
    cases = {
        "state_dict.pth": OrderedDict([("w", torch.arange(6.0).reshape(2, 3)), ("b", torch.ones(2, dtype=torch.float16))]),
        "nested.pth": {"model": {"enc.w": torch.zeros(1, 2, dtype=torch.bfloat16), "t": torch.arange(4).t()},
                        "step": 3, "name": "x"},
        "views.pth": (lambda base: {"base": base, "view": base[1:, ::2], "int8": torch.tensor([1, -2], dtype=torch.int8)})(
            torch.arange(12.0).reshape(3, 4)),
    }
    for name, obj in cases.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        put("torch_checkpoint", name, buf.getvalue())


def seeds_pickle():
    value = {"a": [1, 2.5, None, True, "s\u00e9"], "t": (1, (2, 3)), "neg": -(2 ** 40),
             "nested": [[[]], {}], "set": {1, 2}, "fs": frozenset([3])}
    shared = [1, 2]
    value["shared"] = [shared, shared]
    for proto in range(0, 6):
        v = dict(value)
        if proto < 4:  # sets are EMPTY_SET / ADDITEMS from protocol 4 on, a global (refused) before
            del v["set"], v["fs"]
        put("pickle", "data_p%d.pkl" % proto, pickle.dumps(v, protocol=proto))
    # Refused values: bytes (a global before protocol 3) and an integer beyond 64 bits.
    put("pickle", "refused_p2.pkl", pickle.dumps([b"by", 2 ** 70], protocol=2))
    put("pickle", "bytes_p4.pkl", pickle.dumps([b"by", bytearray(b"ba")], protocol=4))


def py2_refs_pickle(refs, proto):
    """A Python 2 style pickle of the refs list: str as STRING / SHORT_BINSTRING (py2's `str`), written by hand
    because Python 3 pickles str as unicode."""
    out = bytearray()
    if proto >= 2:
        out += b"\x80\x02"

    def s(x):
        b = x.encode("utf-8")
        if proto == 0:
            out.extend(b"S" + repr(x).encode() + b"\n")
        elif len(b) < 256:
            out.extend(b"U" + bytes([len(b)]) + b)
        else:
            out.extend(b"T" + struct.pack("<i", len(b)) + b)

    def i(x):
        if proto == 0:
            out.extend(b"I%d\n" % x)
        else:
            out.extend(b"J" + struct.pack("<i", x))

    def val(v):
        if isinstance(v, str):
            s(v)
        elif isinstance(v, int):
            i(v)
        elif isinstance(v, list):
            out.extend(b"(l" if proto == 0 else b"]")
            if proto == 0:
                for x in v:
                    val(x)
                    out.extend(b"a")
            else:
                if v:
                    out.extend(b"(")
                    for x in v:
                        val(x)
                    out.extend(b"e")
        elif isinstance(v, dict):
            out.extend(b"(d" if proto == 0 else b"}")
            if proto == 0:
                for k, x in v.items():
                    val(k)
                    val(x)
                    out.extend(b"s")
            else:
                if v:
                    out.extend(b"(")
                    for k, x in v.items():
                        val(k)
                        val(x)
                    out.extend(b"u")

    val(refs)
    out.extend(b".")
    return bytes(out)


def seeds_refer():
    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "category_id": 1, "split": "train", "file_name": "a_0.jpg",
         "sent_ids": [0, 1], "sentences": [{"sent": "the cat on the left", "raw": "The cat", "sent_id": 0,
                                            "tokens": ["the", "cat"]}, {"sent": "cat", "sent_id": 1, "tokens": []}]},
        {"ref_id": 1, "ann_id": 11, "image_id": 2, "category_id": 2, "split": "testA",
         "sentences": [{"sent": "dog", "sent_id": 2}]},
        {"ref_id": 2, "ann_id": 12, "image_id": 2, "category_id": 1, "split": "val",
         "sentences": [{"sent": "empty mask", "sent_id": 3}]},
    ]
    put("refer_pickle", "refs_p0.p", py2_refs_pickle(refs, 0))
    put("refer_pickle", "refs_p2.p", py2_refs_pickle(refs, 2))
    put("refer_pickle", "refs_py3_p4.p", pickle.dumps(refs, protocol=4))


def rle_counts_to_string(cnts):
    """pycocotools rleToString."""
    s = []
    for i, c in enumerate(cnts):
        x = c
        if i > 2:
            x -= cnts[i - 2]
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (ch & 0x10) != 0 if x == -1 else (x != 0 or (ch & 0x10) != 0)
            if more:
                ch |= 0x20
            s.append(chr(ch + 48))
    return "".join(s)


def seeds_coco_rle():
    cases = {"3x4.bin": (3, 4, [3, 2, 5, 2]), "all_ones.bin": (2, 2, [0, 4]), "empty.bin": (5, 5, [25]),
             "big_runs.bin": (64, 64, [1000, 2000, 1096]), "many.bin": (8, 8, [1] * 64)}
    for name, (h, w, cnts) in cases.items():
        put("coco_rle", name, bytes([(h - 1) % 64, (w - 1) % 64]) + rle_counts_to_string(cnts).encode())
    put("coco_rle", "polygon.bin", bytes([31, 31]) + struct.pack("<8d", 1, 1, 20.5, 2, 25, 30, 3, 28))


def seeds_reason_seg():
    ann = {"text": ["the thing you sit on", "a chair"], "is_sentence": True, "shapes": [
        {"label": "target", "points": [[1, 1], [30, 2], [28, 20], [3, 25]], "shape_type": "polygon"},
        {"label": "ignore", "points": [[10, 10], [15, 10], [15, 15]], "shape_type": "polygon"},
        {"label": "flag", "points": [], "shape_type": "polygon"}]}
    put("reason_seg_json", "labelme.json", json.dumps(ann))
    put("reason_seg_json", "cp1252.json", json.dumps({"text": "caf\u00e9", "is_sentence": False, "shapes": [
        {"label": "x", "points": [[0, 0], [5, 0], [5, 5]]}]}, ensure_ascii=False).encode("cp1252"))


def seeds_refcocom():
    put("refcocom_json", "anns.json", json.dumps([
        {"img_name": "COCO_train2014_000000000009.jpg", "segment_id": "123", "sentences": [{"sent": "the bowl rim"}]},
        {"img_name": "b.jpg", "segment_id": 7, "sentences": [{"sent": "a"}, {"sent": "b"}]}]))


def seeds_images():
    from PIL import Image
    import numpy as np
    rgb = Image.fromarray((np.arange(4 * 5 * 3) * 7 % 256).astype("uint8").reshape(4, 5, 3))
    for name, img, fmt in [("rgb.png", rgb, "PNG"), ("gray.png", rgb.convert("L"), "PNG"),
                           ("rgba.png", rgb.convert("RGBA"), "PNG"), ("pal.png", rgb.convert("P"), "PNG"),
                           ("rgb.jpg", rgb, "JPEG"), ("gray.jpg", rgb.convert("L"), "JPEG")]:
        buf = io.BytesIO()
        img.save(buf, fmt)
        put("image_decode", name, buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(np.arange(6, dtype="uint16").reshape(2, 3) * 9000).save(buf, "PNG")
    put("image_decode", "gray16.png", buf.getvalue())
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", progressive=True)
    put("image_decode", "progressive.jpg", buf.getvalue())


def seeds_serve_request():
    """`m2sa serve` requests: the first byte picks the parser (fuzz/serve_request_fuzz.cpp)."""
    import base64
    from PIL import Image
    import numpy as np
    buf = io.BytesIO()
    Image.fromarray((np.arange(4 * 5 * 3) * 7 % 256).astype("uint8").reshape(4, 5, 3)).save(buf, "PNG")
    png = buf.getvalue()
    b64 = base64.b64encode(png).decode()
    uri = "data:image/png;base64," + b64
    put("serve_request", "segment.json", b"\x00" + json.dumps(
        {"image": b64, "question": "Where is the cup?", "max_new_tokens": 16, "mask_format": "png",
         "overlay": True}).encode())
    put("serve_request", "session.json", b"\x01" + json.dumps({"image": uri}).encode())
    put("serve_request", "ask.json", b"\x02" + json.dumps({"question": "And its handle?", "masks": False}).encode())
    put("serve_request", "chat.json", b"\x03" + json.dumps({
        "model": "m2sa", "max_tokens": 8, "stream": True, "temperature": 0, "m2sa": {"mask_format": "rle"},
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "What is red?"},
                                                  {"type": "image_url", "image_url": {"url": uri}}]},
                     {"role": "assistant", "content": "The cup [SEG]."},
                     {"role": "user", "content": "And the handle?"}]}).encode())
    put("serve_request", "segment_multipart.bin", b"\x04" + b"\n--\n".join(
        [b"image\na.png\n" + png, b"question\n\nWhere?", b"max_new_tokens\n\n12", b"overlay\n\ntrue"]))
    put("serve_request", "image_uri.txt", b"\x05" + uri.encode())


def varint(b, i):
    x, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return x, i


def enc_varint(x):
    out = bytearray()
    while True:
        c = x & 0x7F
        x >>= 7
        out.append(c | (0x80 if x else 0))
        if not x:
            return bytes(out)


def seeds_tokenizer():
    """llama2_tokenizer.model cut to its first pieces (unk, <s>, </s>, the 256 byte pieces and some merges),
    keeping the trainer and normaliser specs: a valid BPE model of a few KB."""
    with open(os.path.join(FIXTURES, "llama2_tokenizer.model"), "rb") as f:
        b = f.read()
    out, i, kept = bytearray(), 0, 0
    while i < len(b):
        start = i
        key, i = varint(b, i)
        field, wt = key >> 3, key & 7
        if wt == 2:
            n, i = varint(b, i)
            i += n
        elif wt == 0:
            _, i = varint(b, i)
        elif wt == 5:
            i += 4
        elif wt == 1:
            i += 8
        if field == 1:
            kept += 1
            if kept > 400:
                continue
        out += b[start:i]
    put("tokenizer_model", "llama2_first400.model", bytes(out))


def main():
    seeds_safetensors()
    seeds_hf_index()
    seeds_pickle()
    seeds_refer()
    seeds_coco_rle()
    seeds_reason_seg()
    seeds_refcocom()
    seeds_tokenizer()
    seeds_images()
    seeds_serve_request()
    seeds_torch()


if __name__ == "__main__":
    sys.exit(main())
