from img2img.cli import main

main()
