import OutpostCLI

OutpostCommand.main()
