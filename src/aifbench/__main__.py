from aifbench.cli import main

raise SystemExit(main())
