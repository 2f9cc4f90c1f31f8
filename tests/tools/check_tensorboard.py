"""Reads a run's TensorBoard event files with TensorBoard's own EventAccumulator and compares them with its
metrics.jsonl: every scalar of every line must be logged once, at its step, with the value rounded to float32 (the
Summary simple_value type). Used by tests/train/trainer_tensorboard_test.cpp and tests/long/train_m2sa_test.cpp.

usage: check_tensorboard.py RUN_DIR [--min-images N]
Prints one JSON line of counts; exits 1 listing every mismatch."""
import collections
import json
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator as ea

COUNTERS = {"step", "epoch", "samples", "samples_seen"}  # in metrics.jsonl, not charted (trainer.cpp)


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def load(tb_dir, purge):
    acc = ea.EventAccumulator(tb_dir, size_guidance={ea.SCALARS: 0, ea.IMAGES: 0}, purge_orphaned_data=purge)
    acc.Reload()
    scalars, images = collections.defaultdict(list), collections.defaultdict(list)
    for tag in acc.Tags()["scalars"]:
        for e in acc.Scalars(tag):
            scalars[(tag, e.step)].append(e.value)
    for tag in acc.Tags()["images"]:
        for e in acc.Images(tag):
            images[(tag, e.step)].append((e.width, e.height, len(e.encoded_image_string)))
    return scalars, images


def main():
    run = sys.argv[1]
    min_images = int(sys.argv[sys.argv.index("--min-images") + 1]) if "--min-images" in sys.argv else 0
    expected = {}
    with open(f"{run}/metrics.jsonl") as f:
        for line in f:
            if not line.strip():
                continue
            j = json.loads(line)
            for k, v in j.items():
                if k in COUNTERS or isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                key = (f"{j['type']}/{k}", j["step"])
                if key in expected:
                    sys.exit(f"metrics.jsonl holds {key} twice")
                expected[key] = v
    problems = []
    for purge in (False, True):  # our files themselves, and what TensorBoard shows (it purges orphaned steps)
        scalars, images = load(f"{run}/tb", purge)
        for key, values in scalars.items():
            if len(values) != 1:
                problems.append(f"purge={purge}: {key} logged {len(values)} times: {values}")
        for key in sorted(set(expected) - set(scalars)):
            problems.append(f"purge={purge}: {key} is in metrics.jsonl but not in the event files")
        for key in sorted(set(scalars) - set(expected)):
            problems.append(f"purge={purge}: {key} is in the event files but not in metrics.jsonl")
        for key, v in expected.items():
            if key in scalars and scalars[key][0] != f32(v):
                problems.append(f"purge={purge}: {key}: event {scalars[key][0]!r} != metrics.jsonl {v!r} as float32")
        for key, shots in images.items():
            if len(shots) != 1:
                problems.append(f"purge={purge}: image {key} logged {len(shots)} times")
            if any(w <= 0 or h <= 0 or n <= 0 for w, h, n in shots):
                problems.append(f"purge={purge}: image {key} is empty: {shots}")
        if len(images) < min_images:
            problems.append(f"purge={purge}: {len(images)} image events, expected at least {min_images}")
    tags = sorted({t for t, _ in scalars})
    print(json.dumps({"scalar_events": len(scalars), "tags": tags, "image_events": len(images),
                      "max_step": max((s for _, s in scalars), default=0)}))
    if problems:
        print("\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
