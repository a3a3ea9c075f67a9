from cnnlab.cli import main

raise SystemExit(main())
