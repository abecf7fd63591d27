module tandem.dev/lab/images/pause

go 1.22
