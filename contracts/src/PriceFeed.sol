// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PriceFeed: a Chainlink-compatible price aggregator for the keeper's devnet.
/// @notice Serves both Chainlink read interfaces: AggregatorV3Interface (`latestRoundData`,
///         `getRoundData`, ...) and the legacy AggregatorInterface (`latestAnswer`, `getAnswer`, ...),
///         which Aave V2's and V3's oracles call. Answers are updated by ordinary transactions that call
///         `transmit` with Chainlink OCR2's exact argument and report layout, so an update sitting in the
///         mempool looks like a real OCR2 oracle update and can be decoded (and backrun) as one.
/// @dev DEVNET ONLY: signature checks are SKIPPED. `transmit` does not verify the `rs`/`ss`/`rawVs`
///      signatures, the config digest or the observers; it trusts any authorized transmitter. What it
///      does enforce, like OCR2: the caller is an authorized transmitter, the (epoch, round) in the report
///      context is strictly newer than the last one, the observations are non-empty and sorted ascending,
///      and the answer is the median `observations[observations.length / 2]`. Never use on a real network.
contract PriceFeed {
    struct Transmission {
        int192 answer;
        uint32 observationsTimestamp;
        uint32 transmissionTimestamp;
    }

    // --- Chainlink events (declared exactly as AggregatorInterface declares them) ---
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    // --- Our own events ---
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event TransmitterSet(address indexed transmitter, bool authorized);

    error NotOwner();
    error NotTransmitter();
    error ZeroAddress();
    error StaleReport(uint40 epochAndRound, uint40 latestEpochAndRound);
    error EmptyObservations();
    error ObservationsNotSorted();
    error SignatureCountMismatch();

    /// @notice OCR2Aggregator reports version 6; we mirror it for consumers that check.
    uint256 public constant version = 6;

    uint8 public immutable decimals;
    string public description;
    address public owner;
    mapping(address => bool) public isTransmitter;

    uint32 private latestRoundId;
    uint40 private latestEpochAndRound;
    mapping(uint32 => Transmission) private transmissions;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// @param decimals_ 8 for USD-denominated feeds, 18 for ETH-denominated feeds.
    /// @param description_ e.g. "WETH / USD".
    /// @param transmitter_ first authorized transmitter (the owner can add or remove more).
    /// @param initialAnswer recorded as round 1 so consumers never read a zero price; 0 = no round yet.
    constructor(uint8 decimals_, string memory description_, address transmitter_, int192 initialAnswer) {
        if (transmitter_ == address(0)) revert ZeroAddress();
        decimals = decimals_;
        description = description_;
        owner = msg.sender;
        isTransmitter[transmitter_] = true;
        emit OwnershipTransferred(address(0), msg.sender);
        emit TransmitterSet(transmitter_, true);
        if (initialAnswer != 0) {
            _record(initialAnswer, uint32(block.timestamp));
        }
    }

    // ------------------------------------------------------------------ admin

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function setTransmitter(address transmitter, bool authorized) external onlyOwner {
        if (transmitter == address(0)) revert ZeroAddress();
        isTransmitter[transmitter] = authorized;
        emit TransmitterSet(transmitter, authorized);
    }

    // ------------------------------------------------------------------ OCR2 transmit

    /// @notice Records a new answer from an OCR2-style report. Same signature as OCR2Aggregator.transmit.
    /// @param reportContext [0] config digest (ignored), [1] 27 bytes padding + 4-byte epoch + 1-byte
    ///        round, [2] extra hash (ignored).
    /// @param report abi.encode(uint32 observationsTimestamp, bytes32 rawObservers, int192[] observations,
    ///        int192 juelsPerFeeCoin); observations sorted ascending.
    /// @dev DEVNET ONLY: `rs`, `ss` and `rawVs` are NOT verified (signature checks are skipped); only
    ///      their lengths must match. Access is restricted to authorized transmitters instead.
    function transmit(
        bytes32[3] calldata reportContext,
        bytes calldata report,
        bytes32[] calldata rs,
        bytes32[] calldata ss,
        bytes32 rawVs
    ) external {
        rawVs; // signatures are not checked on the devnet
        if (!isTransmitter[msg.sender]) revert NotTransmitter();
        if (rs.length != ss.length) revert SignatureCountMismatch();

        uint40 epochAndRound = uint40(uint256(reportContext[1]));
        if (epochAndRound <= latestEpochAndRound) revert StaleReport(epochAndRound, latestEpochAndRound);

        (uint32 observationsTimestamp, , int192[] memory observations, ) = abi.decode(
            report,
            (uint32, bytes32, int192[], int192)
        );
        uint256 n = observations.length;
        if (n == 0) revert EmptyObservations();
        for (uint256 i = 1; i < n; ++i) {
            if (observations[i - 1] > observations[i]) revert ObservationsNotSorted();
        }

        latestEpochAndRound = epochAndRound;
        _record(observations[n / 2], observationsTimestamp);
    }

    function _record(int192 answer, uint32 observationsTimestamp) private {
        uint32 roundId = latestRoundId + 1;
        latestRoundId = roundId;
        transmissions[roundId] = Transmission(answer, observationsTimestamp, uint32(block.timestamp));
        emit NewRound(roundId, address(0), observationsTimestamp);
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }

    /// @notice Like OCR2Aggregator.latestTransmissionDetails (configDigest is always zero here).
    function latestTransmissionDetails()
        external
        view
        returns (bytes32 configDigest, uint32 epoch, uint8 round, int192 latestAnswer_, uint64 latestTimestamp_)
    {
        Transmission memory t = transmissions[latestRoundId];
        return (
            bytes32(0),
            uint32(latestEpochAndRound >> 8),
            uint8(latestEpochAndRound),
            t.answer,
            t.transmissionTimestamp
        );
    }

    function typeAndVersion() external pure returns (string memory) {
        return "PriceFeed 1.0.0 (devnet, OCR2-compatible, signatures not checked)";
    }

    // ------------------------------------------------------------------ AggregatorV3Interface

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(latestRoundId);
    }

    /// @dev Like OCR2Aggregator: an unknown round returns zeros rather than reverting.
    function getRoundData(
        uint80 roundId
    )
        public
        view
        returns (uint80 roundId_, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        if (roundId > type(uint32).max) return (0, 0, 0, 0, 0);
        Transmission memory t = transmissions[uint32(roundId)];
        return (roundId, t.answer, t.observationsTimestamp, t.transmissionTimestamp, roundId);
    }

    // ------------------------------------------------------------------ legacy AggregatorInterface

    function latestAnswer() external view returns (int256) {
        return transmissions[latestRoundId].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return transmissions[latestRoundId].transmissionTimestamp;
    }

    function latestRound() external view returns (uint256) {
        return latestRoundId;
    }

    function getAnswer(uint256 roundId) external view returns (int256) {
        if (roundId > type(uint32).max) return 0;
        return transmissions[uint32(roundId)].answer;
    }

    function getTimestamp(uint256 roundId) external view returns (uint256) {
        if (roundId > type(uint32).max) return 0;
        return transmissions[uint32(roundId)].transmissionTimestamp;
    }
}
