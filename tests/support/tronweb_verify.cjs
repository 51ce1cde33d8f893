// Independent check of TRON transactions the signer produced, with tronweb (offline: no node).
// stdin: JSON array of signed Transaction protobufs in hex. stdout: JSON array, for each, what
// tronweb reads from the bytes: the txid (sha256 of raw_data), the base58 address the signature
// recovers to, and the decoded contract (TRC-20 calldata decoded by tronweb's ABI coder).
// With {"private_keys": [hex, ...]} instead, it answers tronweb's address of each key.
// Run with NODE_PATH pointing at scripts/npm/node_modules (tests/support/tron.py does).
"use strict";
const { TronWeb, utils } = require("tronweb");

const { Transaction } = globalThis.TronWebProto;
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const base58 = (hexAddress) => TronWeb.address.fromHex(hexAddress);
const TYPES = { 1: "TransferContract", 31: "TriggerSmartContract" };

function verify(signedHex) {
  const tx = Transaction.deserializeBinary(Buffer.from(signedHex, "hex"));
  const rawHex = hex(tx.getRawData().serializeBinary());
  const txid = utils.crypto.SHA256(utils.code.hexStr2byteArray(rawHex));
  const txidHex = hex(txid);
  const signatures = tx.getSignatureList_asU8().map(hex);
  const recovered = signatures.map((sig) => base58(utils.crypto.ecRecover(txidHex, sig)));
  const type = TYPES[tx.getRawData().getContractList()[0].getType()];
  const decoded = utils.deserializeTx.deserializeTransaction(type, rawHex);
  const value = decoded.contract[0].parameter.value;
  // tronweb's own encoder, from the JSON form a node answers with: the same bytes?
  const { scripts, auths, data, ...rawJson } = decoded;
  const rebuilt = utils.transaction.txJsonToPb({ raw_data: rawJson });
  const reencoded = utils.transaction.txPbToRawDataHex(rebuilt).toLowerCase();
  const out = {
    txid: txidHex,
    raw_data_hex: rawHex,
    reencoded_raw_data_hex: reencoded,
    signatures,
    recovered,
    type,
    type_url: decoded.contract[0].parameter.type_url,
    permission_id: decoded.contract[0].Permission_id,
    fee_limit: String(decoded.fee_limit),
    owner: base58(value.owner_address),
  };
  if (type === "TransferContract") {
    out.to = base58(value.to_address);
    out.amount = String(value.amount);
  } else {
    out.contract = base58(value.contract_address);
    out.call_value = String(value.call_value);
    const selector = utils.ethersUtils.keccak256(
      utils.ethersUtils.toUtf8Bytes("transfer(address,uint256)"),
    ).slice(2, 10);
    out.is_transfer = value.data.slice(0, 8).toLowerCase() === selector;
    const params = utils.abi.decodeParams(["to", "value"], ["address", "uint256"], "0x" + value.data, true);
    out.to = base58(params.to);
    out.amount = params.value.toString();
  }
  return out;
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  const answer = Array.isArray(request)
    ? request.map(verify)
    : request.private_keys.map((key) => TronWeb.address.fromPrivateKey(key));
  process.stdout.write(JSON.stringify(answer));
});
