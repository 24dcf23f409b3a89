// Private feeds without the image server (njs 0.7, libnginx-mod-http-js): which static
// tree the feed secret in the URL may read, or "" to leave the request to the server.
// The server keeps one file per usable credential, named by the sha256 of its secret,
// and a mark of the newest catalog change it answered (server_api/edge.py).
import crypto from 'crypto';
import fs from 'fs';

function read(path) {
    try {
        return fs.readFileSync(path, 'utf8');
    } catch (e) {
        return null;  // no such file: unknown, revoked, not written yet
    }
}

function tree(r) {
    var root = r.variables.document_root;
    var digest = crypto.createHash('sha256').update(r.variables.icefloe_secret).digest('hex');
    var entry = read(root + '/credentials/' + digest);
    var shown = read(root + '/generation');
    if (entry === null || shown === null) {
        return '';
    }
    try {
        entry = JSON.parse(entry);
    } catch (e) {
        return '';
    }
    if (entry.expires !== null && !(Date.now() / 1000 < entry.expires)) {
        return '';  // expired: the server says so
    }
    // The trees must show every catalog change a request could have seen answered.
    if (!(Number(shown) >= Number(read(root + '/changed') || 0))) {
        return '';
    }
    return entry.tree;
}

export default {tree};
