"""What the warm fork server (`tests.warm`) imports once: MONAI (all its submodules), torch, nibabel. Not the
package: `import pipeline` decides at import whether it runs under MONAI's CLI (its excepthook)."""

import monai  # noqa: F401
import monai.bundle  # noqa: F401
import nibabel  # noqa: F401
import torch  # noqa: F401
