import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))      # `import programs`

import torch

torch.set_num_threads(1)            # a shared 2-core machine: PyTorch's thread pool only slows small ops
