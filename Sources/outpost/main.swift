import OutpostCLI
OutpostCommand.main()
