from balancing.cli import main

raise SystemExit(main())
