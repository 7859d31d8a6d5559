

# %% ../nbs/90_cli.ipynb #c1c10003
#| eval: false
import sys
from stroke_ct.cli import main
sys.exit(main())

# %% ../nbs/90_cli.ipynb #c1c10003
#| eval: false
import sys
from stroke_ct.cli import main
sys.exit(main())

# %% ../nbs/90_cli.ipynb #c1c10003
#| eval: false
import sys
from stroke_ct.cli import main
sys.exit(main())

# %% ../nbs/90_cli.ipynb #c1c10003
#| eval: false
import sys
from stroke_ct.cli import main
sys.exit(main())

# %% ../nbs/90_cli.ipynb #c1c10003
#| eval: false
import sys
from stroke_ct.cli import main
sys.exit(main())

# %% ../nbs/90_cli.ipynb #c1c10003
#| eval: false
import sys
from stroke_ct.cli import main
sys.exit(main())

# %% ../nbs/90_cli.ipynb #c1c10003
#| eval: false
import sys
from stroke_ct.cli import main
sys.exit(main())

# %% ../nbs/90_cli.ipynb #c1c10003
#| eval: false
import sys
from stroke_ct.cli import main
sys.exit(main())