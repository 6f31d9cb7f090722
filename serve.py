"""Start the img2img web UI: `python serve.py [--host 127.0.0.1] [--port 7860] [--models checkpoints]
[--queue-size 64] [--concurrency 1]`.

The same as `img2img serve` (same flags, see `python serve.py --help`), for checkouts where the
package is not installed as a command."""

import sys

from img2img.cli import main

if __name__ == "__main__":
    sys.argv[1:1] = ["serve"]
    main()
