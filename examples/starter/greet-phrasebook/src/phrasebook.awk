# greetings.txt (language TAB greeting) -> an aligned phrasebook.
BEGIN { FS = "\t"; print "Phrasebook: how to say hello"; print "" }
NF == 2 { printf "  %-4s %s\n", $1, $2 }
