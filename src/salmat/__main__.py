import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while starting up: nothing has run yet
    print("salmat: interrupted; no output was written", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
