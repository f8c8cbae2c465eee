"""Reads tests/data/tensorboard/ (an event file our C writer, train/tblog.c, produced) with the
tensorboard package and writes tests/data/tensorboard/golden.json for tests/test_tblog.c.

What it records:
  - scalars: every (tag, step, wall_time, value) that TensorBoard's EventAccumulator reads from the
    folder (all of them: no reservoir sampling), in the accumulator's order;
  - records: how many records TensorBoard's own record reader reads from the file, each with both
    masked CRC-32Cs checked (the compat reader raises on a mismatch or a torn record);
  - reserialized_identical: whether each record, parsed as a tf.Event by protobuf, serialised again
    by protobuf and framed again by TensorBoard's RecordWriter, gives the file's bytes exactly (our
    hand encoding is the canonical one);
  - the versions of tensorboard and protobuf.

The C test regenerates the event file from the same inputs, requires it byte-identical to the
committed one, and its scalars (decoded by the test's own reader) equal to these.

Pinned versions: tools/reference/requirements-tensorboard.txt. From the repository root:
    LLAVA_WRITE_TB_GOLDEN=1 build/test_tblog   # (re)writes the event file, if the writer changed
    python tools/reference/make_tensorboard_golden.py
"""
import io
import json
import pathlib
import sys

import google.protobuf
import tensorboard
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
from tensorboard.summary.writer.record_writer import RecordWriter

DIR = pathlib.Path("tests/data/tensorboard")
FILE = DIR / "events.out.tfevents.1700000000.golden"


def records(path):
    reader = PyRecordReader_New(str(path))
    out = []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return out
        out.append(reader.record())


def main():
    raw = FILE.read_bytes()
    recs = records(FILE)
    buf = io.BytesIO()
    writer = RecordWriter(buf)
    for r in recs:
        writer.write(event_pb2.Event.FromString(r).SerializeToString())
    identical = buf.getvalue() == raw

    acc = event_accumulator.EventAccumulator(str(DIR), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    scalars = []
    for tag in acc.Tags()["scalars"]:
        for s in acc.Scalars(tag):
            scalars.append({"tag": tag, "step": s.step, "wall_time": s.wall_time, "value": s.value})
    first = event_pb2.Event.FromString(recs[0]) if recs else None
    golden = {
        "file": FILE.name,
        "tensorboard": tensorboard.__version__,
        "protobuf": google.protobuf.__version__,
        "records": len(recs),
        "file_version": first.file_version if first else None,
        "reserialized_identical": identical,
        "scalars": scalars,
    }
    (DIR / "golden.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print(f"{FILE}: {len(recs)} records, {len(scalars)} scalars, re-serialised identical: {identical}")
    if not identical:
        sys.exit("the file is not what protobuf and TensorBoard's RecordWriter write for the same events")


if __name__ == "__main__":
    main()
