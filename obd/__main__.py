from obd.cli import main

raise SystemExit(main())
