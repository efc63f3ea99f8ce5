# Drives graphite's whisper for the reference tests: one JSON command per stdin line, one JSON
# answer per stdout line. Floats cross the pipe as their IEEE-754 bit patterns (u64), so no
# decimal round trip can blur a comparison.
import json
import struct
import sys

import whisper


def from_bits(bits):
    return struct.unpack('>d', struct.pack('>Q', bits))[0]


def to_bits(value):
    return None if value is None else struct.unpack('>Q', struct.pack('>d', value))[0]


for line in sys.stdin:
    command = json.loads(line)
    op = command['op']
    try:
        if op == 'create':
            whisper.create(command['path'], [tuple(a) for a in command['archives']],
                           command['xff'], command['aggregation'])
            answer = {'ok': True}
        elif op == 'update_many':
            points = [(t, from_bits(v)) for t, v in command['points']]
            whisper.update_many(command['path'], points, now=command['now'])
            answer = {'ok': True}
        elif op == 'fetch':
            fetched = whisper.fetch(command['path'], command['from'], command['until'],
                                    now=command['now'])
            result = None
            if fetched is not None:
                result = [list(fetched[0]), [to_bits(v) for v in fetched[1]]]
            answer = {'ok': True, 'result': result}
        elif op == 'set_order':
            answer = {'ok': True, 'result': list(set(command['values']))}
        else:
            answer = {'ok': False, 'error': 'unknown op %r' % op}
    except Exception as error:  # reported to the test, which decides
        answer = {'ok': False, 'error': '%s: %s' % (type(error).__name__, error)}
    sys.stdout.write(json.dumps(answer) + '\n')
    sys.stdout.flush()
