# Reads the small subset of cloud-config (YAML) the test disk understands; see README.md.
#   ssh_authorized_keys: a block list of public keys      -> appended to the file `keys`
#   ssh_keys: {rsa,ecdsa,ed25519}_private: |  block text   -> written to `keydir`/<type>
#   hostname: name                                          -> printed as "hostname <name>"
# Anything else is ignored. Called as: awk -v keys=FILE -v keydir=DIR -f this user-data
function unquote(s) {
    sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s)
    if (s ~ /^".*"$/ || s ~ /^'.*'$/) s = substr(s, 2, length(s) - 2)
    return s
}
function indent(s) { match(s, /^ */); return RLENGTH }
{ sub(/\r$/, "") }
# Inside a `<type>_private: |` block: keep lines indented deeper than the key, minus the indent.
block != "" {
    if ($0 ~ /^[ \t]*$/) { print "" > block; next }
    if (indent($0) > key_indent) {
        if (text_indent == 0) text_indent = indent($0)
        print substr($0, text_indent + 1) > block
        next
    }
    close(block); block = ""; text_indent = 0
}
/^[ \t]*#/ || /^[ \t]*$/ { next }
/^[^ \t-]/ {
    section = $0; sub(/:.*/, "", section)
    if (section == "hostname") { value = $0; sub(/^[^:]*:/, "", value); print "hostname " unquote(value) }
    next
}
section == "ssh_authorized_keys" && /^[ \t]*- / {
    value = $0; sub(/^[ \t]*- /, "", value); value = unquote(value)
    if (value != "") print value >> keys
    next
}
section == "ssh_keys" && /^[ \t]+(rsa|ecdsa|ed25519)_private:[ \t]*\|-?[ \t]*$/ {
    type = $0; sub(/^[ \t]+/, "", type); sub(/_private:.*/, "", type)
    block = keydir "/" type; key_indent = indent($0); text_indent = 0
    printf "" > block
    next
}
