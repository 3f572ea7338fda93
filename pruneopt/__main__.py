from pruneopt.cli import main

raise SystemExit(main())
