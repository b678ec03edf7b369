// Node Baileys' own multi-file auth state, driven by tests/integration/test_baileys_folder.py.
//
//   node baileys_folder.mjs generate FOLDER MANIFEST
//       Fresh creds (initAuthCreds) in FOLDER via useMultiFileAuthState, then keys of every
//       type written by Baileys' own code paths (pre-keys, an X3DH session, group sender keys,
//       LID mappings) or, where only the socket writes them, through state.keys.set with the
//       shapes the socket uses. MANIFEST (JSON) lists {type: {present: [ids], deleted: [ids]}}.
//   node baileys_folder.mjs compare A B MANIFEST
//       Loads both folders with useMultiFileAuthState and compares creds and every manifest key
//       deep-equal (Buffers by bytes). Prints a JSON summary; exit status 1 on any difference.
//
// Runs from the npm cache directory the test installs into (so bare imports resolve there).
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { isDeepStrictEqual } from 'node:util'
import {
	addTransactionCapability,
	Curve,
	generateSignalPubKey,
	getNextPreKeys,
	initAuthCreds,
	proto,
	signedKeyPair,
	useMultiFileAuthState
} from '@whiskeysockets/baileys'
import { makeLibSignalRepository } from '@whiskeysockets/baileys/lib/Signal/libsignal.js'

const noop = () => {}
const logger = { level: 'silent', trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop }
logger.child = () => logger
const ME = '1111111111:5@s.whatsapp.net'
const PEER_PN = '2222222222@s.whatsapp.net'
const PEER_LID = '3333333333@lid'
const GROUP = '120363025246125888@g.us'
const OLD_GROUP = '5511999999999-1600000000@g.us' // old-style group id: contains '-'

function peerBundle(peer, preKeyId) {
	const preKey = Curve.generateKeyPair()
	return {
		registrationId: peer.registrationId,
		identityKey: generateSignalPubKey(peer.signedIdentityKey.public),
		signedPreKey: {
			keyId: peer.signedPreKey.keyId,
			publicKey: generateSignalPubKey(peer.signedPreKey.keyPair.public),
			signature: peer.signedPreKey.signature
		},
		preKey: { keyId: preKeyId, publicKey: generateSignalPubKey(preKey.public) }
	}
}

async function generate(folder, manifestPath) {
	const { state, saveCreds } = await useMultiFileAuthState(folder)
	const written = {}
	const rawSet = state.keys.set
	state.keys.set = async data => {
		for (const [type, items] of Object.entries(data)) {
			written[type] ??= {}
			for (const [id, value] of Object.entries(items)) written[type][id] = !!value
		}
		return rawSet(data)
	}
	const keys = addTransactionCapability(state.keys, logger, { maxCommitRetries: 2, delayBetweenTriesMs: 10 })
	const creds = state.creds

	// pre-keys exactly as the socket mints them, then one consumed (deleted) as on a pkmsg
	const { update } = await getNextPreKeys({ creds, keys }, 6)
	Object.assign(creds, update)
	await keys.set({ 'pre-key': { 2: null } })

	// a real X3DH session (+ identity-key) to a PN peer and to a LID peer, and a message each
	const repo = makeLibSignalRepository({ creds, keys }, logger)
	for (const [jid, preKeyId] of [
		[PEER_PN, 31],
		[PEER_LID, 32]
	]) {
		await repo.injectE2ESession({ jid, session: peerBundle(initAuthCreds(), preKeyId) })
		await repo.encryptMessage({ jid, data: Buffer.from('hello ' + jid) })
	}
	// group sender keys (ids '{group}::{user}::{device}')
	await repo.encryptGroupMessage({ group: GROUP, meId: ME, data: Buffer.from('hi group') })
	await repo.encryptGroupMessage({ group: OLD_GROUP, meId: '4444444444@lid', data: Buffer.from('hi') })
	// LID <-> PN mapping (writes '{pn}' and '{lid}_reverse')
	await repo.lidMapping.storeLIDPNMappings([{ lid: PEER_LID, pn: PEER_PN }])

	// types only the socket writes, with the shapes it writes them in
	const keyId = Buffer.from([0xfb, 0xff, 0xbf, 0x3e, 0x01]).toString('base64') // '+/+/PgE=': '/', '+', '='
	await keys.set({
		'app-state-sync-key': {
			[keyId]: proto.Message.AppStateSyncKeyData.fromObject({
				keyData: randomBytes(32),
				fingerprint: { rawId: 123456789, currentIndex: 3, deviceIndexes: [0, 5] },
				timestamp: 1700000000123
			})
		},
		'app-state-sync-version': {
			regular_high: {
				version: 7,
				hash: randomBytes(128),
				indexValueMap: { [randomBytes(32).toString('base64')]: { valueMac: randomBytes(32) } }
			}
		},
		'device-list': { 2222222222: ['0', '5'] },
		'identity-key': { '2222222222.0': new Uint8Array(generateSignalPubKey(Curve.generateKeyPair().public)) },
		'sender-key-memory': { [GROUP]: { [ME]: true, '2222222222:5@s.whatsapp.net': true, [PEER_LID]: false } },
		tctoken: {
			[PEER_LID]: { token: randomBytes(24), timestamp: '1700000000' },
			__index: { token: Buffer.from(JSON.stringify([PEER_LID])) }
		}
	})

	// creds as a paired account has them (protobuf account, identities, routing info, unicode)
	const account = proto.ADVSignedDeviceIdentity.fromObject({
		details: randomBytes(40),
		accountSignatureKey: randomBytes(32),
		accountSignature: randomBytes(64),
		deviceSignature: randomBytes(64)
	})
	Object.assign(creds, {
		me: { id: ME, name: 'Clínica São José ✓ "quoted" \\ \u2028', lid: '4444444444:5@lid' },
		account: JSON.parse(JSON.stringify(account)),
		signalIdentities: [
			{ identifier: { name: ME, deviceId: 0 }, identifierKey: generateSignalPubKey(creds.signedIdentityKey.public) }
		],
		platform: 'smba',
		routingInfo: randomBytes(12),
		lastAccountSyncTimestamp: 1700000001,
		myAppStateKeyId: keyId,
		registered: true,
		signedPreKey: signedKeyPair(creds.signedIdentityKey, 2)
	})
	await saveCreds()

	const manifest = {}
	for (const [type, ids] of Object.entries(written)) {
		manifest[type] = {
			present: Object.keys(ids).filter(id => ids[id]),
			deleted: Object.keys(ids).filter(id => !ids[id])
		}
	}
	await writeFile(manifestPath, JSON.stringify(manifest, null, 1))
}

async function load(folder, manifest) {
	const { state } = await useMultiFileAuthState(folder)
	const keys = {}
	for (const [type, { present, deleted }] of Object.entries(manifest)) {
		keys[type] = await state.keys.get(type, [...present, ...deleted])
	}
	return { creds: state.creds, keys }
}

async function compare(a, b, manifestPath) {
	const manifest = JSON.parse(await readFile(manifestPath, 'utf-8'))
	const [left, right] = [await load(a, manifest), await load(b, manifest)]
	const problems = []
	let compared = 0
	if (!isDeepStrictEqual(left.creds, right.creds)) problems.push('creds differ')
	compared += 1
	for (const [type, { present, deleted }] of Object.entries(manifest)) {
		for (const id of present) {
			const [x, y] = [left.keys[type][id], right.keys[type][id]]
			if (x === null || x === undefined) problems.push(`${type} ${id}: missing in ${a}`)
			else if (!isDeepStrictEqual(x, y)) problems.push(`${type} ${id}: values differ`)
			compared += 1
		}
		for (const id of deleted) {
			if (manifest[type].present.includes(id)) continue
			for (const [side, got] of [[a, left], [b, right]]) {
				if (got.keys[type][id] !== null) problems.push(`${type} ${id}: deleted but present in ${side}`)
			}
		}
	}
	const types = Object.fromEntries(Object.entries(manifest).map(([t, m]) => [t, m.present.length]))
	console.log(JSON.stringify({ compared, types, problems }))
	process.exitCode = problems.length ? 1 : 0
}

const [cmd, ...args] = process.argv.slice(2)
if (cmd === 'generate') await generate(...args)
else if (cmd === 'compare') await compare(...args)
else {
	console.error('usage: baileys_folder.mjs generate FOLDER MANIFEST | compare A B MANIFEST')
	process.exitCode = 2
}
