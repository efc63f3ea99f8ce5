#!/usr/bin/python3
"""Writes whisper files with graphite's own `whisper` module, for perfpipe's tests and benches.

Reads one JSON object on stdin:
    {"dir": "/abs/whisper/dir", "retentions": "60s:1d,5m:30d",
     "x_files_factor": 0.5, "aggregation": "average",
     "files": {"h1.svc.m1": [[timestamp, value_or_null], ...], ...}}
and creates DIR/h1/svc/m1.wsp for each series (dots become directories, as carbon lays them
out), then writes its points with whisper.update_many (a null point is left unwritten, a gap).
Must run under Debian's /usr/bin/python3 (python3-whisper).
"""

import json
import os
import sys

import whisper


def main():
    spec = json.load(sys.stdin)
    archives = [whisper.parseRetentionDef(r) for r in spec["retentions"].split(",")]
    for name, points in spec["files"].items():
        path = os.path.join(spec["dir"], *name.split(".")) + ".wsp"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.remove(path)
        whisper.create(path, archives,
                       xFilesFactor=float(spec.get("x_files_factor", 0.5)),
                       aggregationMethod=spec.get("aggregation", "average"))
        known = [(int(t), float(v)) for t, v in points if v is not None]
        if known:
            whisper.update_many(path, known)


if __name__ == "__main__":
    main()
