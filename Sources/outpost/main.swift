import OutpostCLI

await OutpostCommand.start()
